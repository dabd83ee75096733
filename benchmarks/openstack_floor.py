"""The floor of an OpenStack stack: its resources made and deleted with openstacksdk directly.

The steps are the stack's own resources, taken from the same plan the program renders
(lab/openstack_plan.py) and wired as the program wires them (components/): a network, its
subnet and host routes; a router, a port and an interface per attachment, its extra routes
once its interfaces exist; the key pair; per VM a security group and its rules, a port and a
server (waited for until ACTIVE, as the provider waits), and the front end's floating IP and
its association (once the routers are ready). Each step runs as soon as what it needs exists.

What keeps it honest: the calls a provider cannot avoid for these resources, and no others.
Names are looked up once each (image, flavors, the external network); a Neutron object's
tags are a second call after its creation, as the provider makes it (the test cloud's
Neutron refuses tags in a create request), a server's go into its create request (Nova's
microversion 2.52, as the provider does); a host route is a read and a write of its subnet,
an extra route one atomic call (extraroute-atomic); the floating IP is found by its address
before it is bound. Servers and resizes are polled every POLL seconds (the provider polls
at 3 s, then at growing intervals up to 10 s). Every phase authenticates once, as each
`pulumi` command does. Tear-down is the graph backwards, waiting for each server to be gone
before its port goes.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from benchmarks.floor_graph import Graph, Made, Step, create, destroy, each
from components.calculator_tier import ICMP_ECHO_REQUEST
from lab.config import LabConfig
from lab.names import physical_name, student_tag
from lab.openstack_plan import OpenStackPlan, plan_openstack
from lab.topology import build_topology
from labctl.cloud import holdings

POLL = 0.5
SERVER_TIMEOUT = 300.0

NETWORK = "openstack:networking/network:Network"
SUBNET = "openstack:networking/subnet:Subnet"
SUBNET_ROUTE = "openstack:networking/subnetRoute:SubnetRoute"
ROUTER = "openstack:networking/router:Router"
PORT = "openstack:networking/port:Port"
ROUTER_INTERFACE = "openstack:networking/routerInterface:RouterInterface"
ROUTER_ROUTE = "openstack:networking/routerRoute:RouterRoute"
KEYPAIR = "openstack:compute/keypair:Keypair"
SEC_GROUP = "openstack:networking/secGroup:SecGroup"
SEC_GROUP_RULE = "openstack:networking/secGroupRule:SecGroupRule"
INSTANCE = "openstack:compute/instance:Instance"
FLOATING_IP = "openstack:networking/floatingIp:FloatingIp"
FLOATING_IP_ASSOCIATE = "openstack:networking/floatingIpAssociate:FloatingIpAssociate"


def _find_id(find: Callable[..., Any], name: str) -> str:
    found: str = find(name, ignore_missing=False).id
    return found


def _tagged(net: Any, tags: tuple[str, ...], made: Any) -> Any:
    """Tag what was just made, as the provider does: Neutron here refuses tags in a create."""
    if tags:
        net.set_tags(made, list(tags))
    return made


def _wait_server(conn: Any, server_id: str, wanted: str) -> Any:
    deadline = time.monotonic() + SERVER_TIMEOUT
    while True:
        server = conn.compute.get_server(server_id)
        if server.status == wanted:
            return server
        if server.status == "ERROR":
            raise RuntimeError(f"server {server.name} went to ERROR: {server.fault}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"server {server.name} still {server.status}, not {wanted}")
        time.sleep(POLL)


def _gone(conn: Any, server_id: str) -> bool:
    # As the provider decides: a server Nova reports DELETED (it may stay listed so a while
    # after) or SOFT_DELETED is gone, as is one Nova no longer knows.
    server = conn.compute.find_server(server_id, ignore_missing=True)
    return server is None or server.status in ("DELETED", "SOFT_DELETED")


def _wait_gone(conn: Any, server_id: str) -> None:
    deadline = time.monotonic() + SERVER_TIMEOUT
    while not _gone(conn, server_id):
        if time.monotonic() > deadline:
            raise TimeoutError(f"server {server_id} not deleted after {SERVER_TIMEOUT:.0f}s")
        time.sleep(POLL)


@dataclass
class OpenStackFloor:
    """One stack's floor: `create()`, `read()`, `resize()`, `destroy()`, `leftovers()`."""

    conn: Any
    config: LabConfig  # with the floor's own student id
    plan: OpenStackPlan
    graph: Graph
    made: Made

    @property
    def student(self) -> str:
        return self.config.student

    def create(self) -> tuple[float, dict[str, BaseException]]:
        return create(self.graph, self.made)

    def destroy(self) -> tuple[float, dict[str, BaseException]]:
        return destroy(self.graph, self.made)

    def read(self) -> float:
        """One GET of every resource, all at once: what a refresh cannot do with less."""
        net, compute = self.conn.network, self.conn.compute
        readers: dict[str, Callable[[str], Any]] = {
            NETWORK: net.get_network,
            SUBNET: net.get_subnet,
            SUBNET_ROUTE: net.get_subnet,
            ROUTER: net.get_router,
            ROUTER_ROUTE: net.get_router,
            PORT: net.get_port,
            KEYPAIR: compute.get_keypair,
            SEC_GROUP: net.get_security_group,
            SEC_GROUP_RULE: net.get_security_group_rule,
            INSTANCE: compute.get_server,
            FLOATING_IP: net.get_ip,
            FLOATING_IP_ASSOCIATE: net.get_ip,
        }

        def read(step: Step, handle: Any) -> None:
            if step.kind == ROUTER_INTERFACE:
                net.get_port(handle[1])  # the interface is its port on the router
            else:
                readers[step.kind](handle[0])

        return each(self.graph, self.made, read)

    def resize(self, flavor: str) -> float:
        """The front end to `flavor`, as the provider resizes: resize, wait for VERIFY_RESIZE,
        confirm, wait for ACTIVE (the flavor is a name, so it is looked up first)."""
        compute = self.conn.compute
        started = time.monotonic()
        flavor_id = compute.find_flavor(flavor, ignore_missing=False).id
        server_id = self.made[f"server:{self.plan.front.key}"][0]
        compute.resize_server(server_id, flavor_id)
        _wait_server(self.conn, server_id, "VERIFY_RESIZE")
        compute.confirm_server_resize(server_id)
        _wait_server(self.conn, server_id, "ACTIVE")
        return time.monotonic() - started

    def leftovers(self) -> dict[str, list[str]]:
        return leftovers(self.conn, self.student)

    def sweep(self) -> dict[str, list[str]]:
        return sweep(self.conn, self.student)


def leftovers(conn: Any, student: str) -> dict[str, list[str]]:
    """What the project still holds of `student`, by name or tag."""
    return holdings(conn, student)


def sweep(conn: Any, student: str) -> dict[str, list[str]]:
    """Delete whatever of `student` is still there (after a failed tear-down); what it found.
    Servers first, then what they held, routers before their networks."""
    net = conn.network
    found = leftovers(conn, student)
    if not found:
        return found
    prefix, project = f"{student}-", conn.current_project_id
    tag = student_tag(student)
    for ip in net.ips(project_id=project):
        if tag in (ip.tags or []):
            net.delete_ip(ip, ignore_missing=True)
    for server in conn.compute.servers():
        if server.name.startswith(prefix):
            conn.compute.delete_server(server, ignore_missing=True)
            _wait_gone(conn, server.id)
    for router in net.routers(project_id=project):
        if (router.name or "").startswith(prefix):
            net.update_router(router, routes=[])
            for port in net.ports(device_id=router.id):
                net.remove_interface_from_router(router, port_id=port.id)
            net.delete_router(router, ignore_missing=True)
    for port in net.ports(project_id=project):
        if (port.name or "").startswith(prefix):
            net.delete_port(port, ignore_missing=True)
    for group in net.security_groups(project_id=project):
        if (group.name or "").startswith(prefix):
            net.delete_security_group(group, ignore_missing=True)
    for network in net.networks(project_id=project):
        if (network.name or "").startswith(prefix):
            net.delete_network(network, ignore_missing=True)
    for keypair in conn.compute.keypairs():
        if keypair.name.startswith(prefix):
            conn.compute.delete_keypair(keypair, ignore_missing=True)
    return found


def openstack_floor(conn: Any, config: LabConfig) -> OpenStackFloor:
    """The floor of the stack `config` describes (its student id is the floor's own)."""
    plan = plan_openstack(config, build_topology(config), config.student)
    return OpenStackFloor(conn, config, plan, _graph(conn, config, plan), Made())


def _graph(conn: Any, config: LabConfig, plan: OpenStackPlan) -> Graph:
    net, compute = conn.network, conn.compute
    graph = Graph()
    add = graph.add

    def lookup(key: str, find: Callable[[], str]) -> None:
        if key not in graph.steps:
            add(Step(key, "", (), lambda _m, record: record(find())))

    assert config.external_network is not None
    lookup("external-network", partial(_find_id, net.find_network, config.external_network))

    for spec in plan.networks:
        k = spec.key

        def make_network(_m: Made, record: Callable[[Any], None], spec: Any = spec) -> None:
            network = _tagged(
                net, spec.tags, net.create_network(name=spec.physical_name, admin_state_up=True)
            )
            record((network.id,))

        def make_subnet(m: Made, record: Callable[[Any], None], spec: Any = spec) -> None:
            subnet = _tagged(
                net,
                spec.tags,
                net.create_subnet(
                    name=spec.physical_name,
                    network_id=m[f"network:{spec.key}"][0],
                    cidr=spec.cidr,
                    ip_version=4,
                    gateway_ip=spec.gateway_ip,
                    enable_dhcp=True,
                    allocation_pools=[{"start": spec.dhcp_pool[0], "end": spec.dhcp_pool[1]}],
                    dns_nameservers=list(spec.dns_nameservers),
                ),
            )
            record((subnet.id,))

        add(Step(f"network:{k}", NETWORK, (), make_network, lambda h: net.delete_network(h[0])))
        add(
            Step(
                f"subnet:{k}",
                SUBNET,
                (f"network:{k}",),
                make_subnet,
                lambda h: net.delete_subnet(h[0]),
            )
        )
        for route in spec.host_routes:
            wanted = {"destination": route.destination, "nexthop": route.next_hop}

            def add_route(
                m: Made, record: Callable[[Any], None], k: str = k, wanted: dict[str, str] = wanted
            ) -> None:
                subnet_id = m[f"subnet:{k}"][0]
                routes = list(net.get_subnet(subnet_id).host_routes or [])
                net.update_subnet(subnet_id, host_routes=[*routes, wanted])
                record((subnet_id, wanted))

            def remove_route(handle: Any) -> None:
                subnet_id, wanted = handle
                routes = list(net.get_subnet(subnet_id).host_routes or [])
                net.update_subnet(subnet_id, host_routes=[r for r in routes if r != wanted])

            add(
                Step(
                    f"subnet-route:{k}:{route.destination}",
                    SUBNET_ROUTE,
                    (f"subnet:{k}",),
                    add_route,
                    remove_route,
                )
            )

    router_steps: list[str] = []
    for router in plan.routers:
        rk = f"router:{router.key}"

        def make_router(m: Made, record: Callable[[Any], None], router: Any = router) -> None:
            gateway = {"network_id": m["external-network"]} if router.external else None
            made = _tagged(
                net,
                router.tags,
                net.create_router(
                    name=router.physical_name,
                    admin_state_up=True,
                    external_gateway_info=gateway,
                ),
            )
            record((made.id,))

        add(
            Step(
                rk,
                ROUTER,
                ("external-network",) if router.external else (),
                make_router,
                lambda h: net.delete_router(h[0]),
            )
        )
        interfaces: list[str] = []
        for interface in router.interfaces:
            pk = f"router-port:{router.key}:{interface.subnet}"
            ik = f"router-interface:{router.key}:{interface.subnet}"

            def make_port(
                m: Made,
                record: Callable[[Any], None],
                router: Any = router,
                interface: Any = interface,
            ) -> None:
                port = _tagged(
                    net,
                    router.tags,
                    net.create_port(
                        name=f"{router.physical_name}-{interface.subnet}",
                        network_id=m[f"network:{interface.subnet}"][0],
                        fixed_ips=[
                            {
                                "subnet_id": m[f"subnet:{interface.subnet}"][0],
                                "ip_address": interface.ip_address,
                            }
                        ],
                        security_groups=[],
                        admin_state_up=True,
                    ),
                )
                record((port.id,))

            def attach(m: Made, record: Callable[[Any], None], rk: str = rk, pk: str = pk) -> None:
                router_id, port_id = m[rk][0], m[pk][0]
                net.add_interface_to_router(router_id, port_id=port_id)
                record((router_id, port_id))

            add(
                Step(
                    pk,
                    PORT,
                    (f"network:{interface.subnet}", f"subnet:{interface.subnet}"),
                    make_port,
                    lambda h: net.delete_port(h[0], ignore_missing=True),
                )
            )
            add(
                Step(
                    ik,
                    ROUTER_INTERFACE,
                    (rk, pk),
                    attach,
                    lambda h: net.remove_interface_from_router(h[0], port_id=h[1]),
                )
            )
            interfaces.append(ik)
        router_steps += [rk, *(f"router-port:{router.key}:{i.subnet}" for i in router.interfaces)]
        router_steps += interfaces
        for route in router.routes:
            body = {
                "router": {
                    "routes": [{"destination": route.destination, "nexthop": route.next_hop}]
                }
            }
            key = f"router-route:{router.key}:{route.destination}"

            def add_extra(
                m: Made, record: Callable[[Any], None], rk: str = rk, body: dict[str, Any] = body
            ) -> None:
                net.add_extra_routes_to_router(m[rk][0], body=body)
                record((m[rk][0], body))

            add(
                Step(
                    key,
                    ROUTER_ROUTE,
                    (rk, *interfaces),
                    add_extra,
                    lambda h: net.remove_extra_routes_from_router(h[0], body=h[1]),
                )
            )
            router_steps.append(key)

    key_pair = config.key_pair
    if config.ssh_public_key:
        key_pair = physical_name(config.student, "key")

        def make_keypair(_m: Made, record: Callable[[Any], None]) -> None:
            made = compute.create_keypair(
                name=physical_name(config.student, "key"), public_key=config.ssh_public_key
            )
            record((made.name,))

        add(Step("keypair", KEYPAIR, (), make_keypair, lambda h: compute.delete_keypair(h[0])))

    vms = [plan.front, *plan.services]
    for vm in vms:

        def make_group(_m: Made, record: Callable[[Any], None], vm: Any = vm) -> None:
            group = _tagged(
                net,
                vm.tags,
                net.create_security_group(name=vm.physical_name, description=vm.description),
            )
            record((group.id,))

        add(
            Step(
                f"group:{vm.key}",
                SEC_GROUP,
                (),
                make_group,
                lambda h: net.delete_security_group(h[0]),
            )
        )
    for vm in vms:
        for rule in vm.ingress:
            deps = [f"group:{vm.key}"]
            if rule.from_vm is not None and rule.from_vm != vm.key:
                deps.append(f"group:{rule.from_vm}")

            def make_rule(
                m: Made, record: Callable[[Any], None], vm: Any = vm, rule: Any = rule
            ) -> None:
                if rule.port is None:
                    protocol, low, high = "icmp", ICMP_ECHO_REQUEST, 0
                else:
                    protocol, low, high = "tcp", rule.port, rule.port
                made = net.create_security_group_rule(
                    security_group_id=m[f"group:{vm.key}"][0],
                    direction="ingress",
                    ethertype="IPv4",
                    protocol=protocol,
                    port_range_min=low,
                    port_range_max=high,
                    remote_ip_prefix=rule.from_cidr,
                    remote_group_id=(
                        m[f"group:{rule.from_vm}"][0] if rule.from_vm is not None else None
                    ),
                )
                record((made.id,))

            add(
                Step(
                    f"rule:{rule.key}",
                    SEC_GROUP_RULE,
                    tuple(deps),
                    make_rule,
                    lambda h: net.delete_security_group_rule(h[0]),
                )
            )

    for vm in vms:
        image_key, flavor_key = f"image:{vm.image_name}", f"flavor:{vm.flavor_name}"
        lookup(image_key, partial(_find_id, conn.image.find_image, vm.image_name))
        lookup(flavor_key, partial(_find_id, compute.find_flavor, vm.flavor_name))

        def make_vm_port(m: Made, record: Callable[[Any], None], vm: Any = vm) -> None:
            port = _tagged(
                net,
                vm.tags,
                net.create_port(
                    name=vm.physical_name,
                    network_id=m[f"network:{vm.subnet}"][0],
                    fixed_ips=[
                        {"subnet_id": m[f"subnet:{vm.subnet}"][0], "ip_address": vm.fixed_ip}
                    ],
                    security_groups=[m[f"group:{vm.key}"][0]],
                    admin_state_up=True,
                ),
            )
            record((port.id,))

        def make_server(
            m: Made,
            record: Callable[[Any], None],
            vm: Any = vm,
            image_key: str = image_key,
            flavor_key: str = flavor_key,
        ) -> None:
            server = compute.create_server(
                name=vm.physical_name,
                image_id=m[image_key],
                flavor_id=m[flavor_key],
                networks=[{"port": m[f"port:{vm.key}"][0]}],
                user_data=base64.b64encode(vm.user_data.encode()).decode(),
                tags=list(vm.tags),
                **({"key_name": key_pair} if key_pair else {}),
            )
            record((server.id,))
            _wait_server(conn, server.id, "ACTIVE")

        def delete_server(handle: Any) -> None:
            compute.delete_server(handle[0], ignore_missing=True)
            _wait_gone(conn, handle[0])

        add(
            Step(
                f"port:{vm.key}",
                PORT,
                (f"network:{vm.subnet}", f"subnet:{vm.subnet}", f"group:{vm.key}"),
                make_vm_port,
                lambda h: net.delete_port(h[0]),
            )
        )
        server_deps = [f"port:{vm.key}", image_key, flavor_key]
        if "keypair" in graph.steps:
            server_deps.append("keypair")
        add(Step(f"server:{vm.key}", INSTANCE, tuple(server_deps), make_server, delete_server))

    front = plan.front

    def make_ip(m: Made, record: Callable[[Any], None]) -> None:
        ip = _tagged(
            net,
            front.tags,
            net.create_ip(
                floating_network_id=m["external-network"],
                description=f"public address of {front.physical_name}",
            ),
        )
        record((ip.id, ip.floating_ip_address))

    def associate(m: Made, record: Callable[[Any], None]) -> None:
        address = m["floating-ip"][1]
        ip = next(iter(net.ips(floating_ip_address=address)))
        net.update_ip(ip, port_id=m[f"port:{front.key}"][0])
        record((ip.id,))

    add(
        Step(
            "floating-ip",
            FLOATING_IP,
            ("external-network",),
            make_ip,
            lambda h: net.delete_ip(h[0]),
        )
    )
    add(
        Step(
            "floating-ip-association",
            FLOATING_IP_ASSOCIATE,
            ("floating-ip", f"port:{front.key}", *router_steps),
            associate,
            lambda h: net.update_ip(h[0], port_id=None),
        )
    )
    return graph
