"""The lab boots for real: every role's user data, rendered exactly as the program renders it, on
a Debian 12 guest under QEMU, on a data plane laid out as Neutron would lay out the topology.

One module-scoped lab per topology (default: client; CALCLAB_BOOT_TOPOLOGIES=client,single for
both). The guests boot in parallel; the wait is bounded (CALCLAB_BOOT_TIMEOUT seconds, default
1500): a guest that never answers fails the test with its serial console and cloud-init log.
Everything made here (namespaces, dnsmasq, qemu) is removed at the end, pass or fail.

Needs root, the host tools (tools/guest-image/guest-image install) and the image
(tools/guest-image/guest-image build); without them the layer skips, or fails under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.cloud_init import render_user_data
from lab.config import load_config
from lab.topology import Node, Topology, build_topology
from tests.helpers import skip_or_fail
from tools.dataplane import guest as guest_mod
from tools.dataplane import netns as netns_mod
from tools.dataplane.guest import Guest, GuestImage
from tools.dataplane.netns import NetnsDataPlane, http_request
from tools.dataplane.plan import OUTSIDE, Plan, plan_for

pytestmark = pytest.mark.boot

TOPOLOGIES = os.environ.get("CALCLAB_BOOT_TOPOLOGIES", "client").split(",")
BOOT_TIMEOUT = float(os.environ.get("CALCLAB_BOOT_TIMEOUT", "1500"))
POWEROFF_TIMEOUT = 180.0
POLL_INTERVAL = 5.0
#: A question per service and its answer: "6 3" exercises each operation distinctly.
SERVICE_CHECK = {"sum": "9", "sub": "3", "mul": "18", "div": "2"}
CLOUD_INIT_FILES = [
    "/var/lib/cloud/data/result.json",
    "/var/lib/cloud/data/status.json",
    "/var/log/cloud-init.log",
    "/var/log/cloud-init-output.log",
]


@dataclass
class Lab:
    topology: Topology
    plan: Plan
    dataplane: NetnsDataPlane
    guests: dict[str, Guest]
    workdir: Path
    answered_s: dict[str, float] = field(default_factory=dict)
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    disks: dict[str, dict[str, bytes | None]] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)

    def node(self, role: str) -> Node:
        return next(node for node in self.topology.nodes if node.role == role)

    @property
    def fip(self) -> str:
        return str(self.plan.floating_ips[self.topology.front.role])

    @property
    def outside(self) -> str:
        return self.dataplane.netns(OUTSIDE)

    def probe_netns(self, role: str) -> str:
        """Where a service is polled from: its subnet's DHCP namespace, on the same segment."""
        return self.dataplane.netns(f"qdhcp-{self.node(role).subnet}")

    def report(self, roles: Sequence[str]) -> str:
        """Serial console and cloud-init log of `roles`, for a failure message."""
        parts = []
        for role in roles:
            guest = self.guests[role]
            logs = self.disks.get(role, {})
            ci_log = logs.get("/var/log/cloud-init.log") or b"(no cloud-init.log on the disk)"
            ci_out = logs.get("/var/log/cloud-init-output.log") or b"(no cloud-init-output.log)"
            parts.append(
                f"===== {role}: {'running' if guest.alive() else guest.exit_report()}\n"
                f"--- serial console (last 60 lines) ---\n{guest.serial_tail()}\n"
                f"--- /var/log/cloud-init.log (last 40 lines) ---\n{_tail(ci_log, 40)}\n"
                f"--- /var/log/cloud-init-output.log (last 30 lines) ---\n{_tail(ci_out, 30)}"
            )
        return "\n".join(parts)

    def stop_and_read_disks(self, *, power_off: bool = True) -> None:
        """ACPI power-off for all guests at once (bounded; killed after), then their logs.
        Without `power_off` (a failure already), they are killed at once: reading the disk
        replays the journal, and a guest still booting may not handle the button anyway."""
        for guest in self.guests.values():
            if not power_off:
                guest.kill()
            elif guest.alive():
                # a guest that cannot take the button press is killed below
                with contextlib.suppress(OSError, RuntimeError, ValueError):
                    guest.request_powerdown()
        deadline = time.monotonic() + POWEROFF_TIMEOUT
        for role, guest in self.guests.items():
            if not guest.wait_stopped(max(1.0, deadline - time.monotonic())):
                guest.kill()
                self.killed.append(role)
        for role, guest in self.guests.items():
            if role not in self.disks:
                self.disks[role] = guest.read_files(CLOUD_INIT_FILES)


def _tail(data: bytes, lines: int) -> str:
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-lines:])


def _require_host() -> GuestImage:
    if os.geteuid() != 0:
        skip_or_fail("the boot layer needs root (network namespaces, taps, iptables)")
    missing = netns_mod.missing_host_tools() + sorted(
        {pkg for tool, pkg in guest_mod.HOST_TOOLS.items() if shutil.which(tool) is None}
    )
    if missing:
        skip_or_fail(
            f"missing host packages {' '.join(sorted(set(missing)))}:"
            " run tools/guest-image/guest-image install"
        )
    image = GuestImage.built()
    if image is None:
        skip_or_fail(
            "no guest image for the current recipe: run tools/guest-image/guest-image build"
        )
    return image


def _answers(lab: Lab, role: str) -> bool:
    node = lab.node(role)
    try:
        if node.exposed:
            reply = http_request(lab.outside, lab.fip, node.port, body="(5+6)*2", timeout=5)
            return reply.status == 200 and reply.text.strip() == "22"
        reply = http_request(lab.probe_netns(role), str(node.ip), node.port, body="6 3", timeout=5)
        return reply.status == 200 and reply.text.strip() == SERVICE_CHECK[role]
    except OSError:
        return False


def _wait_for_answers(lab: Lab, started: float) -> None:
    pending = [node.role for node in lab.topology.nodes]
    deadline = started + BOOT_TIMEOUT
    while pending:
        for role in list(pending):
            guest = lab.guests[role]
            if not guest.alive():
                lab.stop_and_read_disks(power_off=False)
                pytest.fail(f"{role}'s VM stopped before answering\n{lab.report([role])}")
            if _answers(lab, role):
                lab.answered_s[role] = round(time.monotonic() - started, 1)
                pending.remove(role)
        if pending and time.monotonic() > deadline:
            lab.stop_and_read_disks(power_off=False)
            pytest.fail(
                f"no answer within {BOOT_TIMEOUT:g} s from {', '.join(pending)}"
                f" (answered: {lab.answered_s})\n{lab.report(pending)}"
            )
        if pending:
            time.sleep(POLL_INTERVAL)


@pytest.fixture(scope="module", params=TOPOLOGIES)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    image = _require_host()
    name: str = request.param
    config = load_config({"topology": name}, "student")
    topology = build_topology(config)
    plan = plan_for(topology)
    workdir = tmp_path_factory.mktemp(f"boot-{name}")
    for leftover in netns_mod.stale_namespaces():  # from an earlier run killed outright
        netns_mod.run(["ip", "netns", "delete", leftover])
    # The pid keeps two runs on one machine (two CI jobs) apart; names stay short for `ip`.
    dataplane = NetnsDataPlane(plan, netns_mod.pid_prefix(), workdir / "dataplane")
    guests: dict[str, Guest] = {}
    lab = Lab(topology, plan, dataplane, guests, workdir)
    load = os.getloadavg()[0]
    try:
        dataplane.up()
        started = time.monotonic()
        for node in topology.nodes:
            nic = plan.guest(node.role)
            tap = f"tap-{node.role}"
            dataplane.add_tap(tap, nic.segment)
            guests[node.role] = Guest(
                node.role,
                image,
                workdir / node.role,
                # exactly what components/calculator_tier.py hands Nova
                user_data=render_user_data(
                    node.role, topology.environment(node.role), python=config.python_path
                ),
                mac=nic.mac,
                tap=tap,
                netns_argv=dataplane.exec_argv("net", []),
            )
            guests[node.role].start()
        _wait_for_answers(lab, started)
        lab.resources = {role: guest.resources() for role, guest in guests.items()}
        timings = {
            "topology": name,
            "answered_s": lab.answered_s,
            "all_answered_s": max(lab.answered_s.values()),
            "qemu_when_all_answered": lab.resources,
            "loadavg_at_start": load,
            "loadavg_at_answer": os.getloadavg()[0],
        }
        (workdir / "timings.json").write_text(json.dumps(timings, indent=2))
        print(f"\nboot layer ({name}): {json.dumps(timings)}")
        yield lab
    finally:
        for guest in guests.values():
            guest.kill()
        problems = dataplane.down()
        left = sorted(ns.name for ns in netns_mod.NETNS_DIR.glob(f"{dataplane.prefix}-*"))
        assert not problems, f"data plane teardown: {problems}"
        assert not left, f"namespaces left behind: {left}"


@pytest.fixture(scope="module")
def stopped_lab(lab: Lab) -> Lab:
    """The same lab after every guest has been powered off and its disk read."""
    started = time.monotonic()
    lab.stop_and_read_disks()
    print(f"\npower-off and disk reads: {time.monotonic() - started:.0f} s, killed: {lab.killed}")
    return lab


# --- from the outside: what a student sees --------------------------------------------------


def test_calculator_answers_through_the_floating_ip(lab: Lab) -> None:
    front = lab.topology.front
    reply = http_request(lab.outside, lab.fip, front.port, body="(5+6)*2", timeout=15)
    assert (reply.status, reply.text.strip()) == (200, "22")
    reply = http_request(lab.outside, lab.fip, front.port, body="(1+2)*3-8/2", timeout=15)
    assert (reply.status, reply.text.strip()) == (200, "5")


def test_web_page_through_the_floating_ip(lab: Lab) -> None:
    reply = http_request(lab.outside, lab.fip, lab.topology.front.port, path="/", timeout=15)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert reply.text.lstrip().lower().startswith("<!doctype html>")


def test_front_reports_every_dependency_healthy(lab: Lab) -> None:
    reply = http_request(lab.outside, lab.fip, lab.topology.front.port, path="/health")
    health = json.loads(reply.text)
    assert (reply.status, health["status"]) == (200, "ok"), health
    assert {name: dep["status"] for name, dep in health["dependencies"].items()} == {
        node.role: "ok" for node in lab.topology.services
    }


def test_no_service_port_is_reachable_from_outside(lab: Lab) -> None:
    """The floating IP forwards to the front end only, which listens on its own port alone;
    the services' fixed addresses are not routed from the external network at all."""
    outcomes: dict[str, str] = {}
    expected: dict[str, str] = {}
    for node in lab.topology.services:
        for host, want in ((lab.fip, "refused"), (str(node.ip), "unreachable")):
            target = f"{host}:{node.port}"
            expected[target] = want
            try:
                netns_mod.connect(lab.outside, host, node.port, timeout=5).close()
                outcomes[target] = "open"
            except ConnectionRefusedError:
                outcomes[target] = "refused"
            except OSError:
                outcomes[target] = "unreachable"
    assert outcomes == expected


def test_services_answer_on_their_fixed_addresses(lab: Lab) -> None:
    """DHCP gave each guest its fixed address (the dnsmasq hosts by MAC, as Neutron's)."""
    for node in lab.topology.services:
        reply = http_request(lab.probe_netns(node.role), str(node.ip), node.port, body="6 3")
        assert reply.text.strip() == SERVICE_CHECK[node.role], node.role


# --- read back from the disks after power-off -----------------------------------------------


def test_cloud_init_finished_without_error_everywhere(stopped_lab: Lab) -> None:
    lab = stopped_lab
    problems = []
    for role, files in lab.disks.items():
        result_raw = files["/var/lib/cloud/data/result.json"]
        status_raw = files["/var/lib/cloud/data/status.json"]
        if result_raw is None or status_raw is None:
            problems.append(f"{role}: cloud-init never finished (no result.json/status.json)")
            continue
        result = json.loads(result_raw)["v1"]
        status = json.loads(status_raw)["v1"]
        if result["errors"]:
            problems.append(f"{role}: errors {result['errors']}")
        if not result["datasource"].startswith("DataSourceNoCloud"):
            problems.append(f"{role}: datasource {result['datasource']}")
        for stage in ("init-local", "init", "modules-config", "modules-final"):
            entry = status.get(stage) or {}
            if entry.get("errors") or not entry.get("finished"):
                problems.append(f"{role}: stage {stage}: {entry}")
    assert not problems, "\n".join(problems) + "\n" + lab.report([r for r in lab.disks])


def test_front_route_table_has_the_dhcp_host_route(stopped_lab: Lab) -> None:
    """cloud-init prints the guest's routing table once the network is up; the host routes
    there came from DHCP option 121 (nothing else in the guest knows about them)."""
    lab = stopped_lab
    front = lab.topology.front
    subnet = lab.topology.subnet(front.subnet)
    output = (lab.disks[front.role]["/var/log/cloud-init-output.log"] or b"").decode()
    routes = set()
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.split("|")]
        # ci-info: | Route | Destination | Gateway | Genmask | Interface | Flags |
        if len(cells) >= 7 and re.fullmatch(r"\d+", cells[1]) and "UG" in cells[6]:
            routes.add((cells[2], cells[3], cells[4]))
    expected = {
        (str(r.destination.network_address), str(r.next_hop), str(r.destination.netmask))
        for r in subnet.host_routes
    } | {("0.0.0.0", str(subnet.gateway_ip), "0.0.0.0")}
    assert routes == expected, f"route table:\n{output[-3000:]}"


def test_guests_were_powered_off_not_killed(stopped_lab: Lab) -> None:
    assert not stopped_lab.killed, f"did not power off within {POWEROFF_TIMEOUT:g} s"
