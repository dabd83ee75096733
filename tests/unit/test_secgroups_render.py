"""The security-group firewall's renderer (tools/dataplane/secgroups.py): API state in, text out.

The packets are in tests/dataplane/; here, which line each kind of rule becomes, and the edges.
When `nft` is installed the rendered text is also checked by nft itself (`nft -c`, which loads
nothing), in a network namespace of its own when we are root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Address

import pytest

from tools.dataplane.secgroups import (
    AddressPair,
    Port,
    Rule,
    SecurityGroup,
    State,
    bridge_name,
    render,
    tap_name,
)

FRONT_ID = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
SUM_ID = "1a2b3c4d-5e6f-7081-92a3-b4c5d6e7f809"
SUB_ID = "2b3c4d5e-6f70-8192-a3b4-c5d6e7f8091a"
CLIENT_NET = "c1c1c1c1-0000-0000-0000-000000000000"
SERVICE_NET = "5e5e5e5e-0000-0000-0000-000000000000"


def tcp(rule_id: str, low: int | None, high: int | None, **remote: str) -> Rule:
    return Rule(
        rule_id, "ingress", protocol="tcp", port_range_min=low, port_range_max=high, **remote
    )


FRONT_SG = SecurityGroup(
    "sg-front",
    "bob-front",
    (
        tcp("front-app", 50000, 50000, remote_ip_prefix="0.0.0.0/0"),
        Rule(
            "front-ping",
            "ingress",
            protocol="icmp",
            port_range_min=8,
            port_range_max=0,
            remote_ip_prefix="0.0.0.0/0",
        ),
        tcp("front-ssh", 22, 22, remote_ip_prefix="198.51.100.0/24"),
        Rule("front-out4", "egress"),
        Rule("front-out6", "egress", ethertype="IPv6"),
    ),
)
SUM_SG = SecurityGroup(
    "sg-sum",
    "bob-sum",
    (
        tcp("sum-app", 50001, 50001, remote_group_id="sg-front"),
        Rule(
            "sum-ping",
            "ingress",
            protocol="icmp",
            port_range_min=8,
            port_range_max=0,
            remote_group_id="sg-front",
        ),
        Rule("sum-out4", "egress"),
    ),
)
FRONT = Port(FRONT_ID, "bob-front", CLIENT_NET, "fa:16:3e:00:01:0a", (IPv4Address("192.168.1.10"),),
             ("sg-front",))  # fmt: skip
SUM = Port(SUM_ID, "bob-sum", SERVICE_NET, "fa:16:3e:00:02:0b", (IPv4Address("192.168.2.11"),),
           ("sg-sum",))  # fmt: skip


def state(*ports: Port, groups: tuple[SecurityGroup, ...] = (FRONT_SG, SUM_SG)) -> State:
    return State(ports, {g.id: g for g in groups}, ports)


def chain(text: str, name: str) -> list[str]:
    """The lines of chain `name` (both tables' chains have distinct names)."""
    lines = text.splitlines()
    start = lines.index(f"\tchain {name} {{")
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start + 1 : end]]


def test_names_are_novas_and_os_vifs() -> None:
    assert tap_name(FRONT_ID) == "tap0f1e2d3c-4b"
    assert bridge_name(CLIENT_NET) == "brqc1c1c1c1-00"
    assert FRONT.tap == "tap0f1e2d3c-4b"


def test_cidr_rules_port_ranges_icmp_and_ipv6() -> None:
    text = render(state(FRONT, SUM))
    ingress = chain(text, "ingress-tap0f1e2d3c-4b")
    assert ingress == [
        "udp sport 67 udp dport 68 accept",
        'tcp dport 50000 accept comment "rule front-app"',  # 0.0.0.0/0: no address match
        'icmp type 8 icmp code 0 accept comment "rule front-ping"',
        'ip saddr 198.51.100.0/24 tcp dport 22 accept comment "rule front-ssh"',
        "counter name ingress-tap0f1e2d3c-4b drop",
    ]
    egress = chain(text, "egress-tap0f1e2d3c-4b")
    assert egress == [
        "udp sport 68 udp dport 67 return",
        'return comment "rule front-out4"',
        "# rule front-out6: IPv6, not enforced (IPv6 is dropped)",
        "counter name egress-tap0f1e2d3c-4b drop",
    ]


def test_remote_group_expands_to_its_members_addresses() -> None:
    pair = AddressPair("192.168.1.128/25", "fa:16:3e:00:01:99")
    front = Port(FRONT_ID, "bob-front", CLIENT_NET, FRONT.mac,
                 (IPv4Address("192.168.1.10"), IPv4Address("192.168.1.20")), ("sg-front",), (pair,))  # fmt: skip
    # A member the firewall does not filter (another host's port) still counts.
    elsewhere = Port("9" * 8, "other", CLIENT_NET, "fa:16:3e:00:01:0c", (IPv4Address("192.168.1.30"),),
                     ("sg-front",))  # fmt: skip
    text = render(
        State((front, SUM), {g.id: g for g in (FRONT_SG, SUM_SG)}, (front, SUM, elsewhere))
    )
    assert chain(text, "ingress-tap1a2b3c4d-5e")[1:3] == [
        "ip saddr { 192.168.1.10, 192.168.1.20, 192.168.1.30, 192.168.1.128/25 } "
        'tcp dport 50001 accept comment "rule sum-app"',
        "ip saddr { 192.168.1.10, 192.168.1.20, 192.168.1.30, 192.168.1.128/25 } "
        'icmp type 8 icmp code 0 accept comment "rule sum-ping"',
    ]


def test_remote_group_with_no_members_allows_nothing() -> None:
    text = render(state(SUM))  # the front end's port is gone: its group is empty
    assert chain(text, "ingress-tap1a2b3c4d-5e") == [
        "udp sport 67 udp dport 68 accept",
        "# rule sum-app: remote group sg-front has no members",
        "# rule sum-ping: remote group sg-front has no members",
        "counter name ingress-tap1a2b3c4d-5e drop",
    ]


@pytest.mark.parametrize(
    ("rule", "line"),
    [
        (tcp("r", 8000, 8080), 'tcp dport 8000-8080 accept comment "rule r"'),
        (tcp("r", 443, 443), 'tcp dport 443 accept comment "rule r"'),
        (tcp("r", None, None), 'meta l4proto tcp accept comment "rule r"'),
        (
            Rule("r", "ingress", protocol="udp", port_range_min=53),
            'udp dport 53 accept comment "rule r"',
        ),
        (
            Rule("r", "ingress", protocol="6", port_range_min=22, port_range_max=22),
            'tcp dport 22 accept comment "rule r"',
        ),
        (Rule("r", "ingress", protocol="icmp"), 'meta l4proto icmp accept comment "rule r"'),
        (
            Rule("r", "ingress", protocol="icmp", port_range_min=0),
            'icmp type 0 accept comment "rule r"',
        ),
        (Rule("r", "ingress", protocol="47"), 'meta l4proto 47 accept comment "rule r"'),
        (Rule("r", "ingress"), 'accept comment "rule r"'),
        (
            Rule("r", "ingress", protocol="any", remote_ip_prefix="10.1.2.3/32"),
            'ip saddr 10.1.2.3 accept comment "rule r"',
        ),
    ],
)
def test_each_kind_of_rule(rule: Rule, line: str) -> None:
    group = SecurityGroup("g", "g", (rule,))
    port = Port(SUM_ID, "p", SERVICE_NET, SUM.mac, (IPv4Address("192.168.2.11"),), ("g",))
    assert chain(render(state(port, groups=(group,))), "ingress-tap1a2b3c4d-5e")[1] == line


def test_a_port_with_no_group_sends_and_receives_nothing_new() -> None:
    bare = Port(SUM_ID, "bare", SERVICE_NET, SUM.mac, (IPv4Address("192.168.2.11"),))
    text = render(state(bare))
    assert chain(text, "ingress-tap1a2b3c4d-5e")[1:] == ["counter name ingress-tap1a2b3c4d-5e drop"]
    assert chain(text, "egress-tap1a2b3c4d-5e")[1:] == ["counter name egress-tap1a2b3c4d-5e drop"]


def test_anti_spoofing_and_marks() -> None:
    pair = AddressPair("192.168.2.50", "fa:16:3e:00:02:99")
    port = Port(SUM_ID, "sum", SERVICE_NET, SUM.mac, SUM.fixed_ips, ("sg-sum",), (pair,))
    text = render(state(FRONT, port))
    # The ports get indexes 1, 2 in tap order; the sender's index in the mark's low half.
    assert chain(text, "from-tap1a2b3c4d-5e") == [
        "meta mark set meta mark & 0xffff0000 | 0x00000002",
        "ether saddr fa:16:3e:00:02:0b arp saddr ether fa:16:3e:00:02:0b arp saddr ip 192.168.2.11 return",
        "ether saddr fa:16:3e:00:02:99 arp saddr ether fa:16:3e:00:02:99 arp saddr ip 192.168.2.50 return",
        "ether saddr fa:16:3e:00:02:0b arp saddr ether fa:16:3e:00:02:0b arp saddr ip 0.0.0.0 return",
        "ether saddr fa:16:3e:00:02:0b ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 return",
        "ether saddr fa:16:3e:00:02:0b ip saddr 192.168.2.11 return",
        "ether saddr fa:16:3e:00:02:99 ip saddr 192.168.2.50 return",
        "counter name spoof-tap1a2b3c4d-5e drop",
    ]
    assert (
        chain(text, "to-tap1a2b3c4d-5e")[0] == "meta mark set meta mark & 0x0000ffff | 0x00020000"
    )
    # The bridge table's forward chain comes first in the text.
    assert chain(text, "forward") == [
        "type filter hook forward priority filter; policy accept;",
        'iifname "tap0f1e2d3c-4b" jump from-tap0f1e2d3c-4b',
        'iifname "tap1a2b3c4d-5e" jump from-tap1a2b3c4d-5e',
        'oifname "tap0f1e2d3c-4b" jump to-tap0f1e2d3c-4b',
        'oifname "tap1a2b3c4d-5e" jump to-tap1a2b3c4d-5e',
    ]


def test_stateful_dispatch_and_one_zone_per_network() -> None:
    text = render(state(FRONT, SUM))
    inet = text[text.index("table inet calclab_sg {\n") :]
    assert chain(inet, "zones") == [
        "type filter hook prerouting priority raw; policy accept;",
        'iifname "brq5e5e5e5e-00" ct zone set 1',  # networks in id order
        'iifname "brqc1c1c1c1-00" ct zone set 2',
    ]
    assert chain(inet, "forward") == [
        "type filter hook forward priority filter; policy accept;",
        "ct state established,related accept",
        "ct state invalid counter name invalid drop",
        "meta mark & 0x0000ffff == 0x00000001 jump egress-tap0f1e2d3c-4b",
        "meta mark & 0x0000ffff == 0x00000002 jump egress-tap1a2b3c4d-5e",
        "meta mark & 0xffff0000 == 0x00010000 jump ingress-tap0f1e2d3c-4b",
        "meta mark & 0xffff0000 == 0x00020000 jump ingress-tap1a2b3c4d-5e",
    ]


def test_the_text_does_not_depend_on_the_apis_order() -> None:
    # The agent reloads only when the text changes; Neutron lists rules in no fixed order.
    shuffled = SecurityGroup(SUM_SG.id, SUM_SG.name, tuple(reversed(SUM_SG.rules)))
    two_groups = Port(SUM_ID, SUM.name, SERVICE_NET, SUM.mac, SUM.fixed_ips, ("sg-sum", "sg-front"))
    other_way = Port(SUM_ID, SUM.name, SERVICE_NET, SUM.mac, SUM.fixed_ips, ("sg-front", "sg-sum"))
    one = State((FRONT, two_groups), {"sg-front": FRONT_SG, "sg-sum": SUM_SG}, (FRONT, two_groups))
    two = State((other_way, FRONT), {"sg-sum": shuffled, "sg-front": FRONT_SG}, (other_way, FRONT))
    assert render(one) == render(two)


def test_no_ports_still_replaces_the_tables() -> None:
    text = render(state())
    assert text.splitlines()[1:5] == [
        "table bridge calclab_sg {}",
        "delete table bridge calclab_sg",
        "table inet calclab_sg {}",
        "delete table inet calclab_sg",
    ]
    assert "jump" not in text


def test_port_security_off_is_not_filtered() -> None:
    open_port = Port(SUM_ID, "open", SERVICE_NET, SUM.mac, SUM.fixed_ips, port_security=False)
    assert "tap1a2b3c4d-5e" not in render(state(FRONT, open_port))


def test_tap_name_clash_is_refused() -> None:
    twin = Port(FRONT_ID[:11] + "ffff", "twin", CLIENT_NET, "fa:16:3e:00:01:0b", ())
    with pytest.raises(ValueError, match="share a tap name"):
        render(state(FRONT, twin))


@pytest.mark.skipif(shutil.which("nft") is None, reason="nft is not installed")
@pytest.mark.skipif(os.geteuid() != 0, reason="nft -c needs root")
def test_nft_accepts_the_ruleset() -> None:
    pair = AddressPair("192.168.1.128/25", "fa:16:3e:00:01:99")
    front = Port(FRONT_ID, "f", CLIENT_NET, FRONT.mac, FRONT.fixed_ips, ("sg-front",), (pair,))
    sub = Port(SUB_ID, "sub", SERVICE_NET, "fa:16:3e:00:02:0c", (IPv4Address("192.168.2.12"),))
    text = render(state(front, SUM, sub))
    # unshare: a namespace of our own, so the check never touches the machine's ruleset.
    result = subprocess.run(
        ["unshare", "--net", "nft", "-c", "-f", "-"], input=text, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
