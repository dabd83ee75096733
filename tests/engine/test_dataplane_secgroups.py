"""Security groups enforced on real packets (issue 23, item 2), from what `pulumi up` put in Neutron.

`pulumi up` of the shipped client topology (Pulumi.bob.yaml under a student id of our own, with
`sshAllowedCidr` set) on the API-only test cloud; then stand-in guests, with no VM: one network
namespace per server port, joined by a veth whose bridge end is named as Nova names the port's
tap (`tap` + port id[:11]) to a bridge per network (`brq` + network id[:11]), with the port's
MAC and fixed address as Neutron holds them, and the real calculator services listening inside
(plus a stand-in sshd on port 22 and a closed-by-rules port 40000 that listens all the same).
The bridges and taps live in a namespace of their own, as the boot layer's data plane does.

Routers: one namespace stands for both (every router-interface address Neutron holds, on one
veth per network, forwarding on), and an "outside" namespace behind it has one address inside
`sshAllowedCidr` and one outside it. There is no DHCP: the stand-ins get their addresses and
routes (gateway, host routes) from the subnet as the API holds it.

Before the firewall, the data plane carries the forbidden packets (the control: a drop later is
the firewall's). Then the agent (`python -m tools.dataplane.sgfw --once`, the real command)
reads the API and loads its ruleset, and each forbidden packet is sent and seen dropped (a
connect that times out, never one refused, and the drop counters); each allowed one passes,
replies included (stateful). Finally a rule added through the API opens what was closed.

Everything is removed at the end, pass or fail: processes, namespaces (with their bridges,
veths and nft tables), and the stack (`pulumi destroy`, checked with openstacksdk).
Needs root, iproute2 and nftables (installed here with apt when missing).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from lab.config import load_config
from lab.names import PORTS as ROLE_PORTS
from lab.names import SSH_PORT
from lab.topology import build_topology
from tests.apps.calc_cluster import Process
from tests.helpers import skip_or_fail
from tools.dataplane.netns import NETNS_DIR, in_netns, pid_prefix, run, stale_namespaces
from tools.dataplane.secgroups import bridge_name, tap_name

from .conftest import REPO, Pulumi, Toolchain
from .repo_program import copy_program, stack_config
from .test_first_up import holds_nothing
from .test_openstack_testcloud import PUBLIC_KEY

pytestmark = [pytest.mark.engine, pytest.mark.testcloud, pytest.mark.dataplane]

STEM = "sgfw"  # our namespaces' names start with it (stale ones are removed on the next run)
SSH_CIDR = IPv4Network("198.51.100.0/24")
ALLOWED = IPv4Address("198.51.100.7")  # an outside host inside sshAllowedCidr
DENIED = IPv4Address("203.0.113.7")  # and one outside it
CLOSED_PORT = 40000  # listened on by every stand-in, allowed by no rule
SPOOFED = "192.168.2.99"  # on the service subnet, nobody's fixed IP
ALLOWED_WAIT, DROP_WAIT = 10.0, 2.5
UP_TIMEOUT = 900.0
PORTS: dict[str, int] = {str(role): port for role, port in ROLE_PORTS.items()}
SERVICE_CHECK = {
    "sum": ("6 3", "9"),
    "sub": ("6 3", "3"),
    "mul": ("6 3", "18"),
    "div": ("6 3", "2"),
}


def ensure_host_tools() -> None:
    if os.geteuid() != 0:
        skip_or_fail("the data-plane test needs root (network namespaces, nft)")
    if shutil.which("ip") is None:
        skip_or_fail("iproute2 is not installed")
    if shutil.which("nft") is None:
        # The firewall's one Debian package; a machine without it gets it here.
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "nftables"]
        if subprocess.run(install, env=env, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, check=False)
            subprocess.run(install, env=env, capture_output=True, check=True, timeout=600)


# ---------------------------------------------------------------- the stand-in data plane


@dataclass
class Listener:
    """A TCP server inside a namespace that accepts and writes one line (a stand-in sshd, or
    any port): reaching it proves the SYN got through and the SYN-ACK came back."""

    netns: str
    port: int
    sock: socket.socket = field(init=False)

    def __post_init__(self) -> None:
        self.sock = in_netns(self.netns, lambda: socket.create_server(("0.0.0.0", self.port)))
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-standin\r\n")

    def close(self) -> None:
        self.sock.close()


@dataclass
class StandIns:
    """Namespaces, veths and bridges for the ports the API holds; `down()` undoes everything."""

    prefix: str
    namespaces: list[str] = field(default_factory=list)
    processes: list[Process] = field(default_factory=list)
    listeners: list[Listener] = field(default_factory=list)

    @property
    def bridges(self) -> str:
        return f"{self.prefix}-net"

    def ns(self, key: str) -> str:
        return f"{self.prefix}-{key}"

    def add_ns(self, name: str) -> str:
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])
        return name

    def bridge(self, network_id: str) -> str:
        name = bridge_name(network_id)
        run(["ip", "-n", self.bridges, "link", "add", name, "type", "bridge"])
        run(["ip", "-n", self.bridges, "link", "set", name, "up"])
        return name

    def plug(self, netns: str, host_end: str, inside: str, bridge: str, mac: str | None) -> None:
        """A veth from `netns` (`inside`) to `bridge` (`host_end`), both made in place."""
        run(["ip", "link", "add", host_end, "netns", self.bridges, "type", "veth",
             "peer", "name", inside, "netns", netns])  # fmt: skip
        if mac is not None:
            run(["ip", "-n", netns, "link", "set", inside, "address", mac])
        run(["ip", "-n", self.bridges, "link", "set", host_end, "master", bridge, "up"])
        run(["ip", "-n", netns, "link", "set", inside, "up"])

    def down(self) -> list[str]:
        problems = []
        for listener in self.listeners:
            listener.close()
        for process in self.processes:
            process.stop()
        for name in reversed(self.namespaces):
            try:
                run(["ip", "netns", "delete", name])
            except Exception as error:  # reported, so that a test's own failure is the one shown
                problems.append(str(error))
        return problems


@dataclass(frozen=True)
class Guest:
    role: str
    netns: str
    ip: IPv4Address
    tap: str
    mac: str


def ip(netns: str, *args: str) -> str:
    """`ip -n NETNS ARGS...`."""
    return run(["ip", "-n", netns, *args])


def build(
    stand: StandIns, cloud: Any, student: str, env: dict[str, dict[str, str]]
) -> dict[str, Guest]:
    """The stand-ins for every server port of the student's networks, from the API's state."""
    net = cloud.network
    stand.add_ns(stand.bridges)
    router = stand.add_ns(stand.ns("router"))
    in_netns(router, lambda: Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n"))
    guests: dict[str, Guest] = {}
    for key in ("client", "service"):
        network = net.find_network(f"{student}-{key}", ignore_missing=False)
        subnet = net.get_subnet(network.subnet_ids[0])
        prefixlen = IPv4Network(subnet.cidr).prefixlen
        bridge = stand.bridge(network.id)
        ports = list(net.ports(network_id=network.id))
        # The routers: every router-interface address on this network, on one veth.
        inside = f"qr-{network.id[:8]}"
        stand.plug(router, f"r-{network.id[:8]}", inside, bridge, None)
        for port in ports:
            if (port.device_owner or "").startswith("network:router_interface"):
                address = port.fixed_ips[0]["ip_address"]
                ip(router, "addr", "add", f"{address}/{prefixlen}", "dev", inside)
        for port in ports:
            owner, name = port.device_owner or "", port.name or ""
            if owner.startswith("network:") or not name.startswith(f"{student}-"):
                continue
            role = name.removeprefix(f"{student}-")
            address = IPv4Address(port.fixed_ips[0]["ip_address"])
            netns = stand.add_ns(stand.ns(role))
            guest = Guest(role, netns, address, tap_name(port.id), port.mac_address)
            stand.plug(netns, guest.tap, "eth0", bridge, port.mac_address)
            ip(netns, "addr", "add", f"{address}/{prefixlen}", "dev", "eth0")
            # As the guest's DHCP client would set them: the subnet's host routes, its gateway.
            for route in subnet.host_routes or ():
                ip(netns, "route", "add", route["destination"], "via", route["nexthop"])
            ip(netns, "route", "add", "default", "via", subnet.gateway_ip)
            guests[role] = guest
    outside = stand.add_ns(stand.ns("outside"))
    run(["ip", "link", "add", "qg-out", "netns", router, "type", "veth",
         "peer", "name", "eth0", "netns", outside])  # fmt: skip
    for address in (ALLOWED, DENIED):  # the router at .1 of each outside network
        ip(router, "addr", "add", f"{address - 6}/24", "dev", "qg-out")
        ip(outside, "addr", "add", f"{address}/24", "dev", "eth0")
    ip(router, "link", "set", "qg-out", "up")
    ip(outside, "link", "set", "eth0", "up")
    ip(outside, "route", "add", "default", "via", str(ALLOWED - 6))
    for guest in guests.values():
        wrapper = ["ip", "netns", "exec", guest.netns]
        stand.processes.append(Process(guest.role, env[guest.role], wrapper=wrapper))
        stand.listeners += [Listener(guest.netns, SSH_PORT), Listener(guest.netns, CLOSED_PORT)]
    return guests


# ---------------------------------------------------------------- packets


def reach(
    netns: str, host: IPv4Address, port: int, source: str | None = None, wait: float = DROP_WAIT
) -> str:
    """'open' (connected), 'dropped' (no answer within `wait`), or what else happened. Packets
    expected through get longer (`ALLOWED_WAIT`): a loaded machine must not fail them."""

    def attempt() -> str:
        timeout = wait
        try:
            sock = socket.create_connection(
                (str(host), port), timeout=timeout, source_address=(source, 0) if source else None
            )
        except TimeoutError:
            return "dropped"
        except OSError as error:
            return f"error: {error}"
        sock.close()
        return "open"

    return in_netns(netns, attempt)


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return int(~(total + (total >> 16)) & 0xFFFF)


def ping(netns: str, host: IPv4Address, wait: float = DROP_WAIT) -> bool:
    """One ICMP echo request (raw socket: we are root); True when its reply arrives."""

    def attempt() -> bool:
        ident = os.getpid() & 0xFFFF
        payload = b"calculator-lab"
        header = struct.pack("!BBHHH", 8, 0, 0, ident, 1)
        packet = struct.pack("!BBHHH", 8, 0, _checksum(header + payload), ident, 1) + payload
        with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
            sock.settimeout(wait)
            sock.sendto(packet, (str(host), 0))
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                try:
                    data, (sender, _) = sock.recvfrom(2048)
                except TimeoutError:
                    return False
                icmp = data[(data[0] & 0x0F) * 4 :]
                if (
                    sender == str(host)
                    and icmp[0] == 0
                    and struct.unpack("!H", icmp[4:6])[0] == ident
                ):
                    return True
        return False

    return in_netns(netns, attempt)


def post(netns: str, host: IPv4Address, port: int, body: str) -> str:
    def attempt() -> str:
        import http.client

        connection = http.client.HTTPConnection(str(host), port, timeout=ALLOWED_WAIT)
        try:
            connection.request("POST", "/", body=body)
            return connection.getresponse().read().decode().strip()
        finally:
            connection.close()

    return in_netns(netns, attempt)


def counters(netns: str) -> dict[str, int]:
    """Our named counters' packet counts, both tables."""
    found: dict[str, int] = {}
    for family in ("bridge", "inet"):
        out = run(
            [
                "ip",
                "netns",
                "exec",
                netns,
                "nft",
                "-j",
                "list",
                "counters",
                "table",
                family,
                "calclab_sg",
            ]
        )
        for item in json.loads(out)["nftables"]:
            if "counter" in item:
                found[item["counter"]["name"]] = item["counter"]["packets"]
    return found


def all_at_once(checks: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Run the checks in parallel (each drop costs a full timeout)."""

    def outcome(check: Callable[[], object]) -> object:
        try:
            return check()
        except Exception as error:  # an outcome like any other, so every wrong one is listed
            return f"{type(error).__name__}: {error}"

    with ThreadPoolExecutor(max_workers=len(checks)) as pool:
        futures = {name: pool.submit(outcome, check) for name, check in checks.items()}
        return {name: future.result() for name, future in futures.items()}


# ---------------------------------------------------------------- the stack


@dataclass
class Deployed:
    student: str
    workdir: Path
    pulumi: Pulumi
    times: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, check: bool = True) -> Any:
        return self.pulumi(
            *args, "--stack", self.student, cwd=self.workdir, timeout=UP_TIMEOUT, check=check
        )


@pytest.fixture
def deployed(
    toolchain: Toolchain, pulumi_cli: Pulumi, tmp_path: Path, clouds_yaml: Path, member: Any
) -> Iterator[Deployed]:
    ensure_host_tools()
    toolchain.require("openstack")
    pulumi_cli.extra_env.update(
        {
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
            "PULUMI_CONFIG_PASSPHRASE": "",
        }
    )
    student = f"sgbob{os.getpid()}"
    workdir = copy_program(tmp_path / student, ("bob",))
    (workdir / "Pulumi.bob.yaml").rename(workdir / f"Pulumi.{student}.yaml")
    stack = Deployed(student, workdir, pulumi_cli)
    stack.pulumi("stack", "init", student, cwd=workdir, check=True)
    for key, value in extra_config().items():
        stack.run("config", "set", f"calculator-lab:{key}", value)
    try:
        started = time.monotonic()
        stack.run("up", "--yes", "--skip-preview")
        stack.times["pulumi up"] = time.monotonic() - started
        yield stack
    finally:
        started = time.monotonic()
        stack.run("destroy", "--yes", "--skip-preview", check=False)
        stack.times["pulumi destroy"] = time.monotonic() - started
        print(" ".join(f"{k} {v:.1f}s" for k, v in stack.times.items()))
        left = holds_nothing(member, [student])
        assert not left, f"the test left resources: {left}"


def extra_config() -> dict[str, str]:
    """What the test sets on top of Pulumi.bob.yaml: SSH open to a CIDR (which needs a key)."""
    return {"sshAllowedCidr": str(SSH_CIDR), "sshPublicKey": PUBLIC_KEY}


def lab_environment(student: str) -> dict[str, dict[str, str]]:
    """Each role's calculator environment, as the program writes it into the user data."""
    config = {**stack_config("bob"), **extra_config()}
    topology = build_topology(load_config(config, student))
    return {node.role: topology.environment(node.role) for node in topology.nodes}


def agent_argv(clouds_yaml: Path, student: str, netns: str, *mode: str) -> list[str]:
    """The agent exactly as an operator runs it (`mode`: --once, or --interval N)."""
    return [sys.executable, "-m", "tools.dataplane.sgfw", "--cloud", os.environ.get("OS_CLOUD", "testcloud"),
            "--network", f"{student}-client", "--network", f"{student}-service", "--netns", netns, *mode]  # fmt: skip


def agent_env(clouds_yaml: Path) -> dict[str, str]:
    return {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds_yaml), "PYTHONPATH": str(REPO)}


def agent(clouds_yaml: Path, student: str, netns: str) -> subprocess.CompletedProcess[str]:
    argv = agent_argv(clouds_yaml, student, netns, "--once")
    return subprocess.run(
        argv, cwd=REPO, env=agent_env(clouds_yaml), capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


def test_security_groups_enforced_on_real_packets(
    deployed: Deployed, member: Any, clouds_yaml: Path
) -> None:
    for name in stale_namespaces(STEM):
        subprocess.run(["ip", "netns", "delete", name], check=False)
    stand = StandIns(pid_prefix(STEM))
    try:
        started = time.monotonic()
        g = build(stand, member, deployed.student, lab_environment(deployed.student))
        deployed.times["stand-ins"] = time.monotonic() - started
        assert sorted(g) == ["div", "front", "mul", "sub", "sum"]
        front, sum_, sub = g["front"], g["sum"], g["sub"]
        outside = stand.ns("outside")

        # Control: with no firewall the data plane carries what the rules forbid.
        assert post(outside, front.ip, PORTS["front"], "(5+6)*2") == "22"
        control = all_at_once(
            {
                "service to service": lambda: reach(
                    sum_.netns, sub.ip, PORTS["sub"], wait=ALLOWED_WAIT
                ),
                "ssh from a denied address": lambda: reach(
                    outside, front.ip, SSH_PORT, str(DENIED), ALLOWED_WAIT
                ),
                "outside to a service": lambda: reach(
                    outside, sum_.ip, PORTS["sum"], str(ALLOWED), ALLOWED_WAIT
                ),
            }
        )
        assert set(control.values()) == {"open"}, control
        # A spoofing guest: sum sends from an address that is not its own. The router knows
        # where that address is without asking (ARP, which anti-spoofing also stops), so what
        # is tested below is the IP source check itself.
        run(["ip", "-n", sum_.netns, "addr", "add", f"{SPOOFED}/24", "dev", "eth0"])
        router = stand.ns("router")
        dev = json.loads(run(["ip", "-n", router, "-j", "route", "get", SPOOFED]))[0]["dev"]
        run(["ip", "-n", router, "neigh", "replace", SPOOFED, "lladdr", sum_.mac, "dev", dev,
             "nud", "permanent"])  # fmt: skip
        assert reach(sum_.netns, front.ip, PORTS["front"], SPOOFED, ALLOWED_WAIT) == "open"

        started = time.monotonic()
        result = agent(clouds_yaml, deployed.student, stand.bridges)
        deployed.times["agent --once"] = time.monotonic() - started
        assert result.returncode == 0, result.stderr
        assert "loaded 5 ports" in result.stdout, result.stdout
        before = counters(stand.bridges)

        started = time.monotonic()
        allowed: dict[str, Callable[[], object]] = {
            f"front to {role}": partial(post, front.netns, g[role].ip, PORTS[role], question)
            for role, (question, _) in SERVICE_CHECK.items()
        }
        allowed |= {
            "(5+6)*2 through the front end": lambda: post(
                outside, front.ip, PORTS["front"], "(5+6)*2"
            ),
            "ssh to the front end from sshAllowedCidr": lambda: reach(
                outside, front.ip, SSH_PORT, str(ALLOWED), ALLOWED_WAIT
            ),
            "ssh from the front end to a service": lambda: reach(
                front.netns, sum_.ip, SSH_PORT, wait=ALLOWED_WAIT
            ),
            "ping the front end from outside": lambda: ping(outside, front.ip, ALLOWED_WAIT),
            "ping a service from the front end": lambda: ping(front.netns, sum_.ip, ALLOWED_WAIT),
            "a service to the front end's port (open to anywhere)": lambda: reach(
                sum_.netns, front.ip, PORTS["front"], wait=ALLOWED_WAIT
            ),
        }
        forbidden: dict[str, Callable[[], object]] = {
            f"{a} to {b}:{PORTS[b]}": partial(reach, g[a].netns, g[b].ip, PORTS[b])
            for a in SERVICE_CHECK
            for b in SERVICE_CHECK
            if a != b
        }
        forbidden |= {
            f"outside ({src}) to {role}:{PORTS[role]}": partial(
                reach, outside, g[role].ip, PORTS[role], str(src)
            )
            for role in SERVICE_CHECK
            for src in (ALLOWED, DENIED)
        }
        forbidden |= {
            "the router to sum:50001": lambda: reach(stand.ns("router"), sum_.ip, PORTS["sum"]),
            "ssh to the front end from outside sshAllowedCidr": lambda: reach(
                outside, front.ip, SSH_PORT, str(DENIED)
            ),
            "ssh to a service from sshAllowedCidr": lambda: reach(
                outside, sum_.ip, SSH_PORT, str(ALLOWED)
            ),
            "ssh from a service to a service": lambda: reach(sub.netns, sum_.ip, SSH_PORT),
            "ping a service from a service": lambda: ping(sub.netns, sum_.ip),
            "ping a service from outside": lambda: ping(outside, sum_.ip),
            # Stateful: the front end's replies on its ephemeral ports pass above, but nothing
            # new reaches a port no rule opens.
            f"a service to the front end's closed port {CLOSED_PORT}": lambda: reach(
                sum_.netns, front.ip, CLOSED_PORT
            ),
            f"outside to the front end's closed port {CLOSED_PORT}": lambda: reach(
                outside, front.ip, CLOSED_PORT, str(ALLOWED)
            ),
            "a spoofed source address": lambda: reach(
                sum_.netns, front.ip, PORTS["front"], SPOOFED
            ),
        }
        outcome = all_at_once({**allowed, **forbidden})
        deployed.times["checks"] = time.monotonic() - started
        expected: dict[str, object] = {name: "open" for name in allowed}
        expected |= {name: "dropped" for name in forbidden}
        for role, (_, answer) in SERVICE_CHECK.items():
            expected[f"front to {role}"] = answer
        expected["(5+6)*2 through the front end"] = "22"
        for name in ("ping the front end from outside", "ping a service from the front end"):
            expected[name] = True
        for name in ("ping a service from a service", "ping a service from outside"):
            expected[name] = False
        wrong = {
            name: (outcome[name], expected[name])
            for name in expected
            if outcome[name] != expected[name]
        }
        assert not wrong, f"(got, expected): {wrong}"

        # The drops are the firewall's: its counters moved.
        after = counters(stand.bridges)
        grew = {name for name in after if after[name] > before.get(name, 0)}
        for name in (
            f"ingress-{sub.tap}",
            f"ingress-{sum_.tap}",
            f"ingress-{front.tap}",
            f"spoof-{sum_.tap}",
        ):
            assert name in grew, f"{name} did not count a drop: {after}"

        # Driven by the API: the agent left running (its loop, a read every second) opens a
        # path at the next round after a rule allowing it (sum may reach sub) appears there.
        log = Path(deployed.workdir) / "sgfw-loop.log"
        looping = subprocess.Popen(
            agent_argv(clouds_yaml, deployed.student, stand.bridges, "--interval", "1"),
            cwd=REPO, env=agent_env(clouds_yaml), stdout=log.open("w"), stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        try:
            # Its first round first (the ruleset --once loaded), so the rule is news to it.
            assert wait_for(lambda: "loaded" in log.read_text(), 60.0), log.read_text()
            groups = {sg.name: sg for sg in member.network.security_groups()}
            member.network.create_security_group_rule(
                security_group_id=groups[f"{deployed.student}-sub"].id, direction="ingress",
                ethertype="IPv4", protocol="tcp", port_range_min=PORTS["sub"],
                port_range_max=PORTS["sub"], remote_group_id=groups[f"{deployed.student}-sum"].id,
            )  # fmt: skip
            started = time.monotonic()
            opened = wait_for(lambda: reach(sum_.netns, sub.ip, PORTS["sub"]) == "open", 60.0)
            deployed.times["rule added to path open"] = time.monotonic() - started
            assert opened, "the agent's loop did not apply the new rule"
            assert reach(g["mul"].netns, sub.ip, PORTS["sub"]) == "dropped"
            time.sleep(2.5)  # rounds with nothing new: nothing is reloaded
        finally:
            looping.terminate()
            looping.wait(timeout=30)
        # The same ruleset as --once left, then the one with the new rule: two loads, no more.
        assert log.read_text().count("sgfw: loaded 5 ports") == 2, log.read_text()
    finally:
        problems = stand.down()
        left = [name for name in stand.namespaces if (NETNS_DIR / name).exists()]
        with contextlib.suppress(Exception):
            print(" ".join(f"{k} {v:.1f}s" for k, v in deployed.times.items()))
        assert not problems, problems
        assert not left, left
