"""Smoke test of the testcloud: everything the calculator stacks need, done as the student.

Builds a miniature of one stack with openstacksdk as a project member (network, subnet with
a host route, router with an external gateway and an interface at a fixed address, a port,
a security group with a rule, a server with user data, a floating IP on the port, a resize),
then tears it down and checks the project holds exactly what it held before.
No data plane exists: nothing here waits for a guest to boot, answer ping or run cloud-init.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import time
import uuid
from collections.abc import Callable
from typing import Any

import openstack.exceptions
import pytest

pytestmark = pytest.mark.testcloud

CIDR = "10.77.0.0/24"
ROUTER_IP = "10.77.0.254"
PORT_IP = "10.77.0.10"
HOST_ROUTE = {"destination": "10.78.0.0/24", "nexthop": "10.77.0.253"}
USER_DATA = "#cloud-config\nruncmd:\n  - echo calculator smoke\n"
PUBLIC_CIDR = ipaddress.ip_network("172.24.4.0/24")


def inventory(conn: Any) -> dict[str, set[str]]:
    """IDs of everything the project owns that a stack could leave behind."""
    project = conn.current_project_id
    net = conn.network
    return {
        "servers": {s.id for s in conn.compute.servers()},
        "ports": {p.id for p in net.ports(project_id=project)},
        "routers": {r.id for r in net.routers(project_id=project)},
        "networks": {n.id for n in net.networks(project_id=project)},
        "subnets": {s.id for s in net.subnets(project_id=project)},
        "floating_ips": {f.id for f in net.ips(project_id=project)},
        "security_groups": {g.id for g in net.security_groups(project_id=project)},
        "keypairs": {k.id for k in conn.compute.keypairs()},
    }


class Timer:
    """Wall time of each phase, printed at the end (run pytest with -s to see it)."""

    def __init__(self) -> None:
        self.marks: list[tuple[str, float]] = []
        self.last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.marks.append((name, now - self.last))
        self.last = now

    def report(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.marks)


def test_member_builds_and_tears_down_a_stack_in_miniature(member: Any, admin: Any) -> None:
    before = inventory(member)
    tag = f"smoke-{uuid.uuid4().hex[:6]}"
    undo: list[Callable[[], object]] = []
    timer = Timer()
    try:
        _build_and_check(member, admin, tag, undo, timer)
        _tear_down(undo)
        timer.lap("delete")
    finally:
        # A failure midway must not leave the project dirty for the next test.
        with contextlib.suppress(openstack.exceptions.SDKException):
            _tear_down(undo)
    print(f"\ntestcloud smoke: {timer.report()}")
    assert inventory(member) == before, "the project is not back to its state before the test"


def _tear_down(undo: list[Callable[[], object]]) -> None:
    while undo:
        undo.pop()()


def _build_and_check(
    member: Any, admin: Any, tag: str, undo: list[Callable[[], object]], timer: Timer
) -> None:
    net, compute = member.network, member.compute
    public = net.find_network("public", ignore_missing=False)
    tiny = compute.find_flavor("m1.tiny", ignore_missing=False)
    small = compute.find_flavor("m1.small", ignore_missing=False)
    image = member.image.find_image("debian-12", ignore_missing=False)

    network = net.create_network(name=f"{tag}-net")
    undo.append(lambda: net.delete_network(network, ignore_missing=True))
    subnet = net.create_subnet(
        name=f"{tag}-subnet",
        network_id=network.id,
        ip_version=4,
        cidr=CIDR,
        host_routes=[HOST_ROUTE],
    )
    undo.append(lambda: net.delete_subnet(subnet, ignore_missing=True))
    assert net.get_subnet(subnet.id).host_routes == [HOST_ROUTE]

    router = net.create_router(
        name=f"{tag}-router", external_gateway_info={"network_id": public.id}
    )
    undo.append(lambda: net.delete_router(router, ignore_missing=True))
    router_port = net.create_port(
        name=f"{tag}-router-port",
        network_id=network.id,
        fixed_ips=[{"subnet_id": subnet.id, "ip_address": ROUTER_IP}],
    )
    undo.append(lambda: net.delete_port(router_port, ignore_missing=True))
    # Positional on purpose: the keyword is port_id in openstacksdk 4.10 and port in 4.22.
    net.add_interface_to_router(router, None, router_port.id)
    undo.append(lambda: _detach(net, router, router_port.id))
    router = net.get_router(router.id)
    assert router.external_gateway_info["network_id"] == public.id
    interfaces = list(net.ports(device_id=router.id, device_owner="network:router_interface"))
    assert [p.fixed_ips[0]["ip_address"] for p in interfaces] == [ROUTER_IP]

    group = net.create_security_group(name=f"{tag}-sg", description="smoke")
    undo.append(lambda: net.delete_security_group(group, ignore_missing=True))
    rule = net.create_security_group_rule(
        security_group_id=group.id,
        direction="ingress",
        ethertype="IPv4",
        protocol="tcp",
        port_range_min=50000,
        port_range_max=50000,
        remote_ip_prefix="0.0.0.0/0",
    )
    rules = {r.id for r in net.security_group_rules(security_group_id=group.id)}
    assert rule.id in rules

    port = net.create_port(
        name=f"{tag}-port",
        network_id=network.id,
        fixed_ips=[{"subnet_id": subnet.id, "ip_address": PORT_IP}],
        security_group_ids=[group.id],
    )
    undo.append(lambda: net.delete_port(port, ignore_missing=True))
    timer.lap("network")

    server = compute.create_server(
        name=f"{tag}-server",
        flavor_id=tiny.id,
        image_id=image.id,
        networks=[{"port": port.id}],
        user_data=base64.b64encode(USER_DATA.encode()).decode(),
    )
    undo.append(lambda: _delete_server(compute, server.id))
    server = compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=180)
    timer.lap("server ACTIVE")
    # Members may not read user data back; an admin may, and that is how stacks get checked.
    stored = admin.compute.get_server(server.id).user_data
    assert base64.b64decode(stored).decode() == USER_DATA
    assert net.get_port(port.id).status == "ACTIVE"

    fip = net.create_ip(floating_network_id=public.id, port_id=port.id)
    undo.append(lambda: net.delete_ip(fip, ignore_missing=True))
    fip = net.get_ip(fip.id)
    assert fip.fixed_ip_address == PORT_IP
    assert ipaddress.ip_address(fip.floating_ip_address) in PUBLIC_CIDR
    assert [f.id for f in net.ips(port_id=port.id)] == [fip.id]

    compute.resize_server(server, small.id)
    server = compute.wait_for_server(server, status="VERIFY_RESIZE", failures=["ERROR"], wait=180)
    compute.confirm_server_resize(server)
    server = compute.wait_for_server(server, status="ACTIVE", failures=["ERROR"], wait=180)
    assert compute.get_server(server.id).flavor.original_name == "m1.small"
    timer.lap("resize")


def _detach(net: Any, router: Any, port_id: str) -> None:
    with contextlib.suppress(openstack.exceptions.NotFoundException):
        net.remove_interface_from_router(router, None, port_id)


def _delete_server(compute: Any, server_id: str) -> None:
    server = compute.find_server(server_id)
    if server is None:
        return
    compute.delete_server(server)
    compute.wait_for_delete(server, wait=120)
