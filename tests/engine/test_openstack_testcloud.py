"""`pulumi up` / `destroy` of both OpenStack topologies against the local control plane.

Runs the real engine and provider against tools/testcloud (Keystone, Neutron, Nova with the
fake driver, Glance, Placement), then checks with openstacksdk, never with our own code, that
the cloud holds what the lab asks: routers and their interface addresses, the client subnet's
host route, the service subnet's gateway, security-group rules, exactly one floating IP bound
to the front end's port, five ACTIVE servers whose user data is what we rendered. A second
`up` changes nothing; a new front-end flavor resizes in place; `destroy` empties the project.
Also: two students side by side, and Nova's API killed in the middle of an `up`.

Times of each step are printed (run pytest with -s).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from lab.cloud_init import render_user_data
from lab.config import load_config
from lab.topology import build_topology

from .conftest import REPO, Pulumi, Toolchain
from .repo_program import copy_program

pytestmark = [pytest.mark.engine, pytest.mark.testcloud]

TESTCLOUD = REPO / "tools" / "testcloud" / "testcloud"
UP_TIMEOUT = 900.0
# An ed25519 key whose private half was thrown away: the provider and Nova validate the format.
PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPOFVePzrOpa7eDkuiuq+IG/Fpc6rGH7fq0i4kE4jaQC test@lab"
)
SSH_CIDR = "198.51.100.0/24"


def base_config(topology: str, student: str) -> dict[str, str]:
    return {
        "target": "openstack",
        "topology": topology,
        "student": student,
        "externalNetwork": "public",  # looked up by name: this exercises the data source too
        "image": "debian-12",
        "flavor": "m1.tiny",
        "sshPublicKey": PUBLIC_KEY,
        "sshAllowedCidr": SSH_CIDR,
    }


@dataclass
class LabStack:
    pulumi: Pulumi
    workdir: Path
    name: str
    config: dict[str, str]
    times: dict[str, float] = field(default_factory=dict)

    def run(self, *args: str, timeout: float = UP_TIMEOUT, check: bool = True) -> Any:
        return self.pulumi(
            *args, "--stack", self.name, cwd=self.workdir, timeout=timeout, check=check
        )

    def timed(self, label: str, *args: str, check: bool = True) -> Any:
        started = time.monotonic()
        result = self.run(*args, check=check)
        self.times[label] = time.monotonic() - started
        return result

    def up(self, label: str = "up", check: bool = True) -> Any:
        return self.timed(label, "up", "--yes", "--skip-preview", check=check)

    def outputs(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.run("stack", "output", "--json").stdout)
        return result

    def rendered_user_data(self) -> dict[str, str]:
        """What the program renders for each server: computed here from the same config."""
        config = load_config(self.config, self.name)
        topology = build_topology(config)
        return {
            f"{config.student}-{node.role}": render_user_data(
                node.role, topology.environment(node.role), python=config.python_path
            )
            for node in topology.nodes
        }


@pytest.fixture
def lab_stack(
    toolchain: Toolchain,
    pulumi_cli: Pulumi,
    tmp_path: Path,
    clouds_yaml: Path,
    member: Any,
) -> Iterator[Any]:
    """A factory of stacks of the real program; whatever a test leaves is destroyed after it."""
    toolchain.require("openstack")
    # The provider finds the student's credentials the way any OpenStack client does.
    pulumi_cli.extra_env.update(
        {
            "OS_CLIENT_CONFIG_FILE": str(clouds_yaml),
            "OS_CLOUD": os.environ.get("OS_CLOUD", "testcloud"),
        }
    )
    made: list[LabStack] = []

    def make(topology: str, student: str) -> LabStack:
        workdir = copy_program(tmp_path / student)
        stack = LabStack(pulumi_cli, workdir, student, base_config(topology, student))
        pulumi_cli("stack", "init", student, cwd=workdir, check=True)
        for key, value in stack.config.items():
            stack.run("config", "set", f"calculator-lab:{key}", value)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.run("destroy", "--yes", "--skip-preview", check=False)
    assert project_is_empty(member), "the tests left resources in the student project"


def project_is_empty(conn: Any, wait: float = 60.0) -> bool:
    """Whether the project holds nothing of a stack; Nova finishes deleting servers (and
    Neutron their ports) a little after the API accepted the deletion, hence the wait."""
    deadline = time.monotonic() + wait
    while not (empty := _project_is_empty(conn, report=time.monotonic() >= deadline)):
        if time.monotonic() >= deadline:
            break
        time.sleep(2)
    return empty


def _project_is_empty(conn: Any, report: bool) -> bool:
    project = conn.current_project_id
    net = conn.network
    leftovers = {
        "servers": list(conn.compute.servers()),
        "ports": list(net.ports(project_id=project)),
        "routers": list(net.routers(project_id=project)),
        "networks": list(net.networks(project_id=project)),
        "floating_ips": list(net.ips(project_id=project)),
        "security_groups": [
            g for g in net.security_groups(project_id=project) if g.name != "default"
        ],
        "keypairs": list(conn.compute.keypairs()),
    }
    for kind, items in leftovers.items():
        if items and report:
            print(f"left over {kind}: {[getattr(i, 'name', i.id) for i in items]}")
    return not any(leftovers.values())


def by_name(items: Any, prefix: str) -> dict[str, Any]:
    return {item.name: item for item in items if (item.name or "").startswith(prefix)}


def servers_once_built(admin: Any, prefix: str, within: float) -> dict[str, Any]:
    """The servers named `prefix...` by name, once none is in BUILD or `within` s have passed."""
    deadline = time.monotonic() + within
    while True:
        servers = by_name(admin.compute.servers(all_projects=True), prefix)
        if not any(s.status == "BUILD" for s in servers.values()):
            return servers
        if time.monotonic() >= deadline:
            return servers
        time.sleep(2)


def fixed_ips_of_router(conn: Any, router: Any) -> set[str]:
    return {
        fixed["ip_address"]
        for port in conn.network.ports(device_id=router.id)
        if port.device_owner == "network:router_interface"
        for fixed in port.fixed_ips
    }


def check_cloud_holds_the_lab(
    stack: LabStack,
    member: Any,
    admin: Any,
    topology: str,
) -> None:
    student = stack.name
    net = member.network
    project = member.current_project_id
    public = net.find_network("public")
    subnets = by_name(net.subnets(project_id=project), f"{student}-")
    routers = by_name(net.routers(project_id=project), f"{student}-")
    gateway = routers[f"{student}-gateway"]
    assert gateway.external_gateway_info["network_id"] == public.id

    if topology == "client":
        client, service = subnets[f"{student}-client"], subnets[f"{student}-service"]
        assert (client.cidr, client.gateway_ip) == ("192.168.1.0/24", "192.168.1.254")
        assert (service.cidr, service.gateway_ip) == ("192.168.2.0/24", "192.168.2.254")
        assert client.host_routes == [{"destination": "192.168.2.0/24", "nexthop": "192.168.1.253"}]
        inter = routers[f"{student}-inter"]
        assert not inter.external_gateway_info
        assert fixed_ips_of_router(member, gateway) == {"192.168.1.254"}
        assert fixed_ips_of_router(member, inter) == {"192.168.1.253", "192.168.2.254"}
        assert gateway.routes == [{"destination": "192.168.2.0/24", "nexthop": "192.168.1.253"}]
    else:
        private = subnets[f"{student}-private"]
        assert (private.cidr, private.gateway_ip) == ("10.0.2.0/24", "10.0.2.254")
        assert set(routers) == {f"{student}-gateway"}
        assert fixed_ips_of_router(member, gateway) == {"10.0.2.254"}

    groups = by_name(net.security_groups(project_id=project), f"{student}-")
    front_group = groups[f"{student}-front"]
    front_rules = [
        r
        for r in net.security_group_rules(security_group_id=front_group.id)
        if r.direction == "ingress"
    ]
    assert {(r.protocol, r.port_range_min, r.remote_ip_prefix) for r in front_rules} == {
        ("tcp", 50000, "0.0.0.0/0"),
        ("icmp", 8, "0.0.0.0/0"),
        ("tcp", 22, SSH_CIDR),
    }
    for role, port in (("sum", 50001), ("sub", 50002), ("mul", 50003), ("div", 50004)):
        rules = [
            r
            for r in net.security_group_rules(security_group_id=groups[f"{student}-{role}"].id)
            if r.direction == "ingress"
        ]
        assert {(r.protocol, r.port_range_min) for r in rules} == {
            ("tcp", port),
            ("icmp", 8),
            ("tcp", 22),
        }
        assert all(r.remote_group_id == front_group.id and not r.remote_ip_prefix for r in rules)

    ports = by_name(net.ports(project_id=project), f"{student}-")
    floating_ips = [
        ip for ip in net.ips(project_id=project) if ip.port_id in {p.id for p in ports.values()}
    ]
    assert len(floating_ips) == 1
    assert floating_ips[0].port_id == ports[f"{student}-front"].id
    outputs = stack.outputs()
    assert outputs["frontendFloatingIp"] == floating_ips[0].floating_ip_address
    assert outputs["calculatorUrl"] == f"http://{floating_ips[0].floating_ip_address}:50000"

    # After a fault Nova may still be finishing a build that `up` already handed over.
    servers = servers_once_built(admin, f"{student}-", within=120)
    assert set(servers) == {f"{student}-{r}" for r in ("front", "sum", "sub", "mul", "div")}
    expected_user_data = stack.rendered_user_data()
    for name, server in servers.items():
        assert server.status == "ACTIVE", (name, server.status)
        detail = admin.compute.get_server(server.id)
        assert base64.b64decode(detail.user_data).decode() == expected_user_data[name]
        assert [
            a["addr"]
            for net_addrs in detail.addresses.values()
            for a in net_addrs
            if a.get("OS-EXT-IPS:type", "fixed") == "fixed"
        ] == [outputs["privateIps"][name]]


@pytest.mark.parametrize("topology", ["single", "client"])
def test_up_check_no_changes_resize_destroy(
    topology: str,
    lab_stack: Any,
    member: Any,
    admin: Any,
) -> None:
    stack = lab_stack(topology, f"eng-{topology}")
    stack.up()
    check_cloud_holds_the_lab(stack, member, admin, topology)

    # Converged: a second run has nothing to do.
    stack.timed("second up", "up", "--yes", "--skip-preview", "--expect-no-changes")

    # A bigger front end is a resize of the same server, not a new one.
    front_before = member.compute.find_server(f"{stack.name}-front")
    stack.run("config", "set", "--path", "calculator-lab:flavorByRole.front", "m1.small")
    preview = json.loads(stack.run("preview", "--json").stdout)
    front_steps = [s for s in preview["steps"] if s["urn"].endswith("calculator-front-instance")]
    # Every up starts with a refresh (Pulumi.yaml); after it, the one step is an update.
    assert [s["op"] for s in front_steps if s["op"] != "refresh"] == ["update"], front_steps
    stack.up("resize")
    front_after = member.compute.get_server(front_before.id)
    assert front_after.flavor["original_name"] == "m1.small"
    assert front_after.status == "ACTIVE"

    stack.timed("destroy", "destroy", "--yes", "--skip-preview")
    assert project_is_empty(member)
    print(f"\n{topology}: " + ", ".join(f"{k} {v:.1f}s" for k, v in stack.times.items()))


def test_two_students_side_by_side(lab_stack: Any, member: Any) -> None:
    ann = lab_stack("single", "ann")
    ben = lab_stack("client", "ben")
    ann.up()
    ben.up()
    project = member.current_project_id
    names = [n.name for n in member.network.networks(project_id=project)]
    assert sorted(names) == ["ann-private", "ben-client", "ben-service"]
    servers = sorted(s.name for s in member.compute.servers())
    assert len(servers) == 10
    assert len(set(servers)) == 10
    assert ann.outputs()["calculatorUrl"] != ben.outputs()["calculatorUrl"]
    # Each stack still sees exactly its own resources as converged.
    ann.run("preview", "--expect-no-changes")
    ben.run("preview", "--expect-no-changes")


def test_nova_api_dies_during_up_and_the_next_up_converges(
    lab_stack: Any,
    member: Any,
    admin: Any,
) -> None:
    stack = lab_stack("client", "fault")
    env = stack.pulumi.env()
    argv = [
        str(stack.pulumi.toolchain.bin_dir / "pulumi"),
        "up",
        "--yes",
        "--skip-preview",
        "--non-interactive",
        "--stack",
        stack.name,
    ]
    up = subprocess.Popen(
        argv,
        cwd=stack.workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        # Kill Nova's API as soon as the first server of this stack exists in Nova.
        deadline = time.monotonic() + 300
        while not any(
            s.name.startswith("fault-") for s in admin.compute.servers(all_projects=True)
        ):
            assert up.poll() is None, "pulumi up ended before any server was created"
            assert time.monotonic() < deadline, "no server appeared in 300 s"
            time.sleep(0.5)
        subprocess.run([str(TESTCLOUD), "kill", "nova-api"], check=True, timeout=60)
        output, _ = up.communicate(timeout=UP_TIMEOUT)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode != 0, "pulumi up succeeded although Nova's API was killed:\n" + output

    subprocess.run([str(TESTCLOUD), "start"], check=True, timeout=600)
    # The recovery procedure README documents: once Nova answers again, let it finish the
    # builds the outage interrupted, then `up --refresh`. Found by this test: a plain `up`
    # right away finishes the cut-off servers through the provider's update path, which does
    # not wait for a server still in BUILD, so the state can record powerState "build" and an
    # incomplete network list, and a later `up` then wants to replace that server.
    stuck = [
        s for s in servers_once_built(admin, "fault-", within=180).values() if s.status == "BUILD"
    ]
    # Also found by this test (once in several runs): a create that Nova's API accepted just
    # before it died can stay in BUILD for good, because it never reached the conductor. The
    # README's procedure covers it: delete such a server, then `up --refresh`, which creates
    # it again; the checks below still require exactly the lab, nothing duplicated.
    for server in stuck:
        print(f"deleting {server.name}, left in BUILD by Nova for 180 s after the outage")
        admin.compute.delete_server(server.id)
        admin.compute.wait_for_delete(server, wait=180)
    stack.timed("up --refresh after fault", "up", "--yes", "--skip-preview", "--refresh")
    check_cloud_holds_the_lab(stack, member, admin, "client")
    # Nothing duplicated or orphaned, and converged.
    servers = [s for s in admin.compute.servers(all_projects=True) if s.name.startswith("fault-")]
    assert len(servers) == 5
    stack.run("preview", "--expect-no-changes")
    stack.run("preview", "--refresh", "--expect-no-changes")
