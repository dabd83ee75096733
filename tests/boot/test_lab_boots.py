"""The lab boots for real: every role's user data, rendered exactly as the program renders it, on
a Debian 12 guest under QEMU booted as Nova boots a server (its own boot loader, a config-2
config drive, Nova's SMBIOS identity), on a data plane laid out as Neutron would lay out the
topology.

Beside the five, three more guests on the service subnet (`EXTRA_GUESTS`): a service on Debian
11 and one on Debian 13, which must answer like the lab's own, and a service whose pythonPath
names an interpreter the image lacks, which must say so in one line on its serial console
(the console log Nova exposes) instead of staying silent.

One module-scoped lab per topology (default: client; CALCLAB_BOOT_TOPOLOGIES=client,single for
both). The guests boot in parallel; the wait is bounded (CALCLAB_BOOT_TIMEOUT seconds, default
1500): a guest that never answers fails the test with its serial console and cloud-init log.
Everything made here (namespaces, dnsmasq, qemu) is removed at the end, pass or fail.

Needs root, the host tools (tools/guest-image/guest-image install) and the images
(tools/guest-image/guest-image build [--release 11|13]); without them the layer skips, or
fails under CI=true.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from lab.cloud_init import console_line_prefix, render_user_data
from lab.config import load_config
from lab.names import Role
from lab.topology import Node, Topology, build_topology
from tests.helpers import skip_or_fail
from tools.dataplane import guest as guest_mod
from tools.dataplane import netns as netns_mod
from tools.dataplane.guest import DISK_FACTS, Guest, GuestImage
from tools.dataplane.netns import NetnsDataPlane, http_request
from tools.dataplane.plan import OUTSIDE, NodeLike, Plan, RouterLike, SubnetLike, plan_for

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
    "/var/lib/cloud/data/instance-id",
    "/var/log/cloud-init.log",
    "/var/log/cloud-init-output.log",
]
LAB_RELEASE = 12


@dataclass(frozen=True)
class ExtraGuest:
    """A guest beyond the topology's five, on a service subnet address of its own (DHCP gives
    it, as to the others): `role`'s user data, on Debian `release`, rendered with `python` as
    the stack's pythonPath. `fit`: it must serve; otherwise it must refuse on its console."""

    name: str  # the VM's name; also its DHCP hostname and (as tap-<name>) its tap: short
    role: Role
    release: int
    host: int  # its address's host part on the role's subnet
    python: str = "/usr/bin/python3"
    fit: bool = True


EXTRA_GUESTS = (
    ExtraGuest("d11-sum", "sum", 11, 21),
    ExtraGuest("d13-div", "div", 13, 22),
    # Debian 12 has python3.11 only: the stack names an interpreter the image does not have.
    ExtraGuest("unfit-mul", "mul", 12, 23, python="/usr/bin/python3.7", fit=False),
)


@dataclass(frozen=True)
class ExtraNode:
    """An extra guest as the data plan sees a node: a fixed address and a DHCP lease."""

    role: str  # the plan's name for it: the guest's name
    subnet: str
    ip: IPv4Address
    port: int
    exposed: bool = False


@dataclass(frozen=True)
class WithExtras:
    """The topology plus the extra guests' nodes, for `plan_for` (its TopologyLike)."""

    topology: Topology
    extras: tuple[ExtraNode, ...]

    @property
    def subnets(self) -> Sequence[SubnetLike]:
        return self.topology.subnets

    @property
    def routers(self) -> Sequence[RouterLike]:
        return self.topology.routers

    @property
    def nodes(self) -> Sequence[NodeLike]:
        return (*self.topology.nodes, *self.extras)


@dataclass
class Lab:
    topology: Topology
    plan: Plan
    dataplane: NetnsDataPlane
    guests: dict[str, Guest]  # by VM name: the roles, then the extra guests' names
    workdir: Path
    extras: dict[str, ExtraGuest] = field(default_factory=dict)  # those booted
    answered_s: dict[str, float] = field(default_factory=dict)
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    disks: dict[str, dict[str, bytes | None]] = field(default_factory=dict)
    killed: list[str] = field(default_factory=list)

    def node(self, role: str) -> Node:
        return next(node for node in self.topology.nodes if node.role == role)

    def ready(self, name: str) -> bool:
        """Whether guest `name` has done what it boots for: answered, or (an unfit extra)
        refused on its console."""
        extra = self.extras.get(name)
        if extra is None:
            return _answers(self, name)
        if not extra.fit:
            return bool(console_lines(self.guests[name], extra.role))
        node = self.node(extra.role)
        return _service_answers(self.probe_netns(extra.role), str(self.plan.guest(name).ip),
                                node.port, extra.role)  # fmt: skip

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
    if not node.exposed:
        return _service_answers(lab.probe_netns(role), str(node.ip), node.port, role)
    try:
        reply = http_request(lab.outside, lab.fip, node.port, body="(5+6)*2", timeout=5)
    except OSError:
        return False
    return reply.status == 200 and reply.text.strip() == "22"


def _service_answers(netns: str, ip: str, port: int, role: str) -> bool:
    try:
        reply = http_request(netns, ip, port, body="6 3", timeout=5)
    except OSError:
        return False
    return reply.status == 200 and reply.text.strip() == SERVICE_CHECK[role]


def console_lines(guest: Guest, role: str) -> list[str]:
    """The user data's own lines on the guest's serial console (`calculator-lab <role>: ...`),
    as `lab check` finds them in Nova's console log: each at the start of a line."""
    try:
        text = guest.serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    prefix = console_line_prefix(role)
    return [line.strip() for line in re.split(r"[\r\n]+", text) if line.startswith(prefix)]


def _wait_for_answers(lab: Lab, started: float) -> None:
    pending = list(lab.guests)
    deadline = started + BOOT_TIMEOUT
    while pending:
        for role in list(pending):
            guest = lab.guests[role]
            if not guest.alive():
                lab.stop_and_read_disks(power_off=False)
                pytest.fail(f"{role}'s VM stopped before answering\n{lab.report([role])}")
            if lab.ready(role):
                lab.answered_s[role] = round(time.monotonic() - started, 1)
                # CPU-seconds until ready: the guest's cost, apart from the wait for others
                lab.resources[role] = guest.resources()
                pending.remove(role)
        if pending and time.monotonic() > deadline:
            lab.stop_and_read_disks(power_off=False)
            pytest.fail(
                f"no answer within {BOOT_TIMEOUT:g} s from {', '.join(pending)}"
                f" (answered: {lab.answered_s})\n{lab.report(pending)}"
            )
        if pending:
            time.sleep(POLL_INTERVAL)


def _extras_to_boot() -> dict[str, tuple[ExtraGuest, GuestImage]]:
    """The extra guests whose image is built. On a developer machine the others are left out
    (their tests skip, the five still boot); in CI (CI=true) a missing image fails."""
    chosen = {}
    for extra in EXTRA_GUESTS:
        image = GuestImage.built(extra.release)
        if image is not None:
            chosen[extra.name] = (extra, image)
        elif os.environ.get("CI"):
            pytest.fail(
                f"no Debian {extra.release} guest image for {extra.name}:"
                f" run tools/guest-image/guest-image build --release {extra.release}"
            )
    return chosen


@pytest.fixture(scope="module", params=TOPOLOGIES)
def lab(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    image = _require_host()
    name: str = request.param
    config = load_config({"topology": name}, "student")
    topology = build_topology(config)
    extras = _extras_to_boot()
    extra_nodes = tuple(
        ExtraNode(
            extra.name,
            topology.node(extra.role).subnet,
            topology.subnet(topology.node(extra.role).subnet).cidr.network_address + extra.host,
            topology.node(extra.role).port,
        )
        for extra, _ in extras.values()
    )
    plan = plan_for(WithExtras(topology, extra_nodes))
    workdir = tmp_path_factory.mktemp(f"boot-{name}")
    for leftover in netns_mod.stale_namespaces():  # from an earlier run killed outright
        netns_mod.run(["ip", "netns", "delete", leftover])
    # The pid keeps two runs on one machine (two CI jobs) apart; names stay short for `ip`.
    dataplane = NetnsDataPlane(plan, netns_mod.pid_prefix(), workdir / "dataplane")
    guests: dict[str, Guest] = {}
    lab = Lab(topology, plan, dataplane, guests, workdir, {n: e for n, (e, _) in extras.items()})
    # name -> (role, image, pythonPath): the five, then the extras
    boots: dict[str, tuple[Role, GuestImage, str]] = {
        node.role: (node.role, image, config.python_path) for node in topology.nodes
    }
    boots |= {n: (extra.role, img, extra.python) for n, (extra, img) in extras.items()}
    load = os.getloadavg()[0]
    try:
        dataplane.up()
        started = time.monotonic()
        for vm, (role, vm_image, python) in boots.items():
            nic = plan.guest(vm)
            tap = f"tap-{vm}"
            dataplane.add_tap(tap, nic.segment)
            guests[vm] = Guest(
                vm,
                vm_image,
                workdir / vm,
                # exactly what components/calculator_tier.py hands Nova
                user_data=render_user_data(role, topology.environment(role), python=python),
                mac=nic.mac,
                tap=tap,
                netns_argv=dataplane.exec_argv("net", []),
            )
            guests[vm].start()
        _wait_for_answers(lab, started)
        timings = {
            "topology": name,
            "releases": {vm: guest.image.release for vm, guest in guests.items()},
            "answered_s": lab.answered_s,
            "all_answered_s": max(lab.answered_s.values()),
            "qemu_when_answered": lab.resources,
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


# --- the extra guests, while running: other Debian releases, a guest that cannot run -------


def _extra(lab: Lab, name: str) -> ExtraGuest:
    if name not in lab.extras:
        pytest.skip(f"{name}'s image is not built (see _extras_to_boot)")
    return lab.extras[name]


@pytest.mark.parametrize("name", [e.name for e in EXTRA_GUESTS if e.fit])
def test_other_debian_releases_serve_their_role(lab: Lab, name: str) -> None:
    extra = _extra(lab, name)
    ip = str(lab.plan.guest(name).ip)
    port = lab.node(extra.role).port
    reply = http_request(lab.probe_netns(extra.role), ip, port, body="6 3")
    assert (reply.status, reply.text.strip()) == (200, SERVICE_CHECK[extra.role]), (name, reply)
    assert console_lines(lab.guests[name], extra.role) == [
        f"{console_line_prefix(extra.role)}serving on :{port}"
    ]


def test_every_lab_guest_says_it_serves_on_its_console(lab: Lab) -> None:
    said = {
        node.role: console_lines(lab.guests[node.role], node.role) for node in lab.topology.nodes
    }
    assert said == {
        node.role: [f"{console_line_prefix(node.role)}serving on :{node.port}"]
        for node in lab.topology.nodes
    }


def test_an_unfit_guest_says_why_on_its_serial_console(lab: Lab) -> None:
    """The refusal is one line in the serial console log (what Nova exposes), naming the
    role, what is missing and the fix; and the service never started."""
    (extra,) = [_extra(lab, e.name) for e in EXTRA_GUESTS if not e.fit]
    lines = console_lines(lab.guests[extra.name], extra.role)
    assert lines == [
        f"{console_line_prefix(extra.role)}cannot start: no python3 at {extra.python}, the"
        " calculator needs Python 3.8 or newer; use an image with Python 3.8+"
        " (Debian 11+, Ubuntu 20.04+): lab image upload"
    ], lab.guests[extra.name].serial_tail()
    ip = str(lab.plan.guest(extra.name).ip)
    with pytest.raises(ConnectionRefusedError):
        netns_mod.connect(lab.probe_netns(extra.role), ip, lab.node(extra.role).port, 5)


# --- read back from the disks after power-off -----------------------------------------------


def test_cloud_init_finished_without_error_everywhere(stopped_lab: Lab) -> None:
    """Every fit guest: no error in any stage, and the datasource cloud-init chose by itself
    (NoCloud is not in the image's list; ds-identify narrowed the list to the drive) is the
    config drive, whose uuid became the instance id."""
    lab = stopped_lab
    problems = []
    fit = [vm for vm in lab.disks if vm not in lab.extras or lab.extras[vm].fit]
    for vm in fit:
        files = lab.disks[vm]
        result_raw = files["/var/lib/cloud/data/result.json"]
        status_raw = files["/var/lib/cloud/data/status.json"]
        if result_raw is None or status_raw is None:
            problems.append(f"{vm}: cloud-init never finished (no result.json/status.json)")
            continue
        result = json.loads(result_raw)["v1"]
        status = json.loads(status_raw)["v1"]
        if result["errors"]:
            problems.append(f"{vm}: errors {result['errors']}")
        # e.g. "DataSourceConfigDrive [net,ver=2][source=/dev/sr0]"
        if not re.match(r"DataSourceConfigDrive \[.*\]\[source=/dev/sr0\]", result["datasource"]):
            problems.append(f"{vm}: datasource {result['datasource']}")
        # The image lists [ConfigDrive, OpenStack, None]; cloud-init searching only
        # [ConfigDrive, None] means ds-identify ran and detected the drive by itself.
        log = (files["/var/log/cloud-init.log"] or b"").decode(errors="replace")
        searched = re.findall(r"Looking for data source in: (\[[^]]*\])", log)
        if searched[:1] != ["['ConfigDrive', 'None']"]:
            problems.append(f"{vm}: cloud-init searched {searched[:1]}, not ds-identify's choice")
        instance_id = (files["/var/lib/cloud/data/instance-id"] or b"").decode().strip()
        if instance_id != lab.guests[vm].instance.uuid:
            problems.append(f"{vm}: instance id {instance_id!r}, not the config drive's uuid")
        for stage in ("init-local", "init", "modules-config", "modules-final"):
            entry = status.get(stage) or {}
            if entry.get("errors") or not entry.get("finished"):
                problems.append(f"{vm}: stage {stage}: {entry}")
    assert not problems, "\n".join(problems) + "\n" + lab.report(fit)


def test_the_unfit_guests_refusal_is_a_cloud_init_error(stopped_lab: Lab) -> None:
    """The start script exits 1 after its console line: cloud-init's status says so too
    (`cloud-init status` is `error`), on the config drive's datasource like the others."""
    lab = stopped_lab
    unfit = [name for name, extra in lab.extras.items() if not extra.fit]
    if not unfit:
        pytest.skip("the unfit guest's image is not built")
    for name in unfit:
        result = json.loads(lab.disks[name]["/var/lib/cloud/data/result.json"] or b"{}")["v1"]
        assert result["datasource"].startswith("DataSourceConfigDrive"), result
        assert [e for e in result["errors"] if "scripts-user" in e and "runcmd" in e], result


def test_root_file_system_grew_to_the_disk(stopped_lab: Lab) -> None:
    """The image is a 1 GiB disk; each guest's is the flavour's (2 GiB): cloud-init's growpart
    moved the root partition's end to the disk's (growpart leaves the last few sectors, where
    a GPT would keep its backup) and resizefs grew ext4 over the partition."""
    lab = stopped_lab
    mib = 2**20
    grown = {}
    for vm, files in lab.disks.items():
        facts = json.loads(files[DISK_FACTS] or b"{}")
        (root,) = facts["partitions"]
        grown[vm] = {
            "partition reaches the disk's end": facts["disk_bytes"] - (root["start"] + root["size"])
            < mib,
            "ext4 fills the partition": facts["root_fs_bytes"] > root["size"] - mib,
            "larger than the image": facts["root_fs_bytes"] > 1536 * mib,
        }
    assert all(all(checks.values()) for checks in grown.values()), json.dumps(
        {vm: json.loads(files[DISK_FACTS] or b"{}") for vm, files in lab.disks.items()}
    )


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


# --- the images themselves: what `lab image upload` is given -------------------------------


@pytest.mark.parametrize("release", [11, 12, 13])
def test_image_directory_is_one_bootable_disk_with_its_glance_properties(
    release: int, tmp_path: Path
) -> None:
    image = GuestImage.built(release)
    if image is None:
        skip_or_fail(f"run tools/guest-image/guest-image build --release {release}")
    assert sorted(p.name for p in image.directory.iterdir() if p.name != "build.log") == [
        f"debian-{release}.qcow2",
        "manifest",
        "properties.json",
    ]
    properties = image.properties
    assert properties["os_distro"] == "debian"
    assert properties["os_version"] == str(release)
    assert properties["hw_disk_bus"] == "virtio"
    min_ram = properties["min_ram"]
    assert isinstance(min_ram, int)
    assert min_ram >= 256
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(image.disk)],
            capture_output=True, text=True, check=True,
        ).stdout
    )  # fmt: skip
    assert info["format"] == "qcow2"
    assert properties["min_disk"] == -(-info["virtual-size"] // 2**30)  # GiB, rounded up
    first = tmp_path / "mbr"
    subprocess.run(
        ["qemu-img", "dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1",
         f"if={image.disk}", f"of={first}"],
        check=True, capture_output=True,
    )  # fmt: skip
    sector = first.read_bytes()
    (root,) = guest_mod.mbr_partitions(sector)
    assert (root.bootable, root.kind, root.start) == (True, 0x83, 2**20)
    assert root.start + root.size == info["virtual-size"], "the root partition is not the last"
    # GRUB's boot.img in the MBR's code area (it names itself in its error string)
    assert b"GRUB" in sector[:440]
