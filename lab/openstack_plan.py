"""The OpenStack target's plan: the topology's networks, routers and VMs as specs.

Security groups, least privilege first:
- front end: the calculator port (50000) and ping from anywhere; SSH only from the
  configured CIDR, and only when one is configured;
- each service: its own port, ping and SSH (the front end is the jump host) only from members
  of the front end's security group, never from a CIDR, so no other VM and no floating IP can
  reach it.
Egress keeps Neutron's default allow-all rules. The components take these specs as they are;
nothing here talks to a cloud.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lab.cloud_init import render_user_data
from lab.config import LabConfig
from lab.names import FRONT, SSH_PORT, node_tags, physical_name, stack_tag, student_tag
from lab.topology import HostRoute, Node, Router, Subnet, Topology
from specs.openstack import (
    IngressRule,
    NetworkSpec,
    Route,
    RouterInterfaceSpec,
    RouterSpec,
    VmSpec,
)

ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class OpenStackPlan:
    networks: tuple[NetworkSpec, ...]
    routers: tuple[RouterSpec, ...]
    front: VmSpec  # the one VM with a floating IP
    services: tuple[VmSpec, ...]


def plan_openstack(
    config: LabConfig,
    topology: Topology,
    stack: str,
    triggers: Mapping[str, str] | None = None,
) -> OpenStackPlan:
    """Every spec of the stack; `stack` goes into the networks' and routers' tags, which tell
    the preflight who owns a student id. `triggers` (physical name -> replacement trigger,
    lab/replacement.py) when the stack's servers were read."""
    triggers = triggers or {}
    tags = (student_tag(config.student), stack_tag(stack))
    ssh_from = str(config.ssh_allowed_cidr) if config.ssh_allowed_cidr else None
    return OpenStackPlan(
        networks=tuple(_network(config, subnet, tags) for subnet in topology.subnets),
        routers=tuple(_router(config.student, router, tags) for router in topology.routers),
        front=_vm(config, topology, topology.front, ssh_from, triggers),
        services=tuple(
            _vm(config, topology, node, ssh_from, triggers) for node in topology.services
        ),
    )


def _routes(routes: tuple[HostRoute, ...]) -> tuple[Route, ...]:
    return tuple(Route(str(r.destination), str(r.next_hop)) for r in routes)


def _network(config: LabConfig, subnet: Subnet, tags: tuple[str, ...]) -> NetworkSpec:
    first, last = subnet.dhcp_pool
    return NetworkSpec(
        key=subnet.key,
        physical_name=physical_name(config.student, subnet.key),
        cidr=str(subnet.cidr),
        gateway_ip=str(subnet.gateway_ip),
        dhcp_pool=(str(first), str(last)),
        dns_nameservers=tuple(str(ip) for ip in config.dns_nameservers),
        host_routes=_routes(subnet.host_routes),
        tags=tags,
    )


def _router(student: str, router: Router, tags: tuple[str, ...]) -> RouterSpec:
    return RouterSpec(
        key=router.key,
        physical_name=physical_name(student, router.key),
        external=router.external,
        interfaces=tuple(RouterInterfaceSpec(i.subnet, str(i.ip)) for i in router.interfaces),
        routes=_routes(router.routes),
        tags=tags,
    )


def _vm(
    config: LabConfig,
    topology: Topology,
    node: Node,
    ssh_from: str | None,
    triggers: Mapping[str, str],
) -> VmSpec:
    name = physical_name(config.student, node.role)
    image, flavor = config.image_for(node.role), config.flavor_for(node.role)
    # LabConfig requires both for the openstack target.
    assert image is not None
    assert flavor is not None
    return VmSpec(
        key=node.role,
        physical_name=name,
        description=f"calculator {node.role} ({config.student})",
        subnet=node.subnet,
        fixed_ip=str(node.ip),
        image_name=image,
        flavor_name=flavor,
        user_data=render_user_data(
            node.role, topology.environment(node.role), python=config.python_path
        ),
        ingress=ingress_rules(node, ssh_from),
        tags=tuple(node_tags(config.student, node.role)),
        replacement_trigger=triggers.get(name),
    )


def server_names(config: LabConfig, topology: Topology) -> list[str]:
    """The physical names of every server the stack declares (`_vm` names them so)."""
    return [physical_name(config.student, node.role) for node in topology.nodes]


def ingress_rules(node: Node, ssh_from: str | None) -> tuple[IngressRule, ...]:
    role = node.role
    if role == FRONT:
        rules = [IngressRule(f"{role}-app", node.port, from_cidr=ANYWHERE)]
        rules.append(IngressRule(f"{role}-ping", None, from_cidr=ANYWHERE))
        if ssh_from is not None:
            rules.append(IngressRule(f"{role}-ssh", SSH_PORT, from_cidr=ssh_from))
        return tuple(rules)
    rules = [
        IngressRule(f"{role}-app", node.port, from_vm=FRONT),
        IngressRule(f"{role}-ping", None, from_vm=FRONT),
    ]
    if ssh_from is not None:
        rules.append(IngressRule(f"{role}-ssh", SSH_PORT, from_vm=FRONT))
    return tuple(rules)
