"""The OpenStack target's plan: each VM's image, flavor, user data and who may reach it.

Security groups, least privilege first:
- front end: the calculator port (50000) and ping from anywhere; SSH only from the
  configured CIDR, and only when one is configured;
- each service: its own port, ping and SSH (the front end is the jump host) only from members
  of the front end's security group, never from a CIDR, so no other VM and no floating IP can
  reach it.
Egress keeps Neutron's default allow-all rules. `targets/openstack.py` hands this plan to the
components; nothing here talks to a cloud.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.cloud_init import render_user_data
from lab.config import LabConfig
from lab.names import FRONT, SSH_PORT, Role, node_tags, physical_name
from lab.topology import Node, Topology

ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class Ingress:
    """One ingress rule: TCP to `port`, or ICMP echo when `port` is None, from a CIDR or from
    the members of another role's security group."""

    key: str  # unique in the stack: names the rule's resource
    port: int | None
    from_cidr: str | None = None
    from_role: Role | None = None


@dataclass(frozen=True)
class VmPlan:
    role: Role
    name: str  # physical name of the server, its port and its security group
    subnet: str  # the topology's subnet key
    fixed_ip: str
    port: int
    image: str
    flavor: str
    user_data: str
    exposed: bool  # gets the floating IP
    tags: tuple[str, ...]
    ingress: tuple[Ingress, ...]


def plan_vms(config: LabConfig, topology: Topology) -> tuple[VmPlan, ...]:
    """The five VMs, front end first (the services' rules name its group)."""
    ssh_from = str(config.ssh_allowed_cidr) if config.ssh_allowed_cidr else None
    return tuple(_vm(config, topology, node, ssh_from) for node in topology.nodes)


def _vm(config: LabConfig, topology: Topology, node: Node, ssh_from: str | None) -> VmPlan:
    image, flavor = config.image_for(node.role), config.flavor_for(node.role)
    # LabConfig requires both for the openstack target.
    assert image is not None
    assert flavor is not None
    return VmPlan(
        role=node.role,
        name=physical_name(config.student, node.role),
        subnet=node.subnet,
        fixed_ip=str(node.ip),
        port=node.port,
        image=image,
        flavor=flavor,
        user_data=render_user_data(
            node.role, topology.environment(node.role), python=config.python_path
        ),
        exposed=node.exposed,
        tags=tuple(node_tags(config.student, node.role)),
        ingress=ingress_rules(node, ssh_from),
    )


def ingress_rules(node: Node, ssh_from: str | None) -> tuple[Ingress, ...]:
    role = node.role
    if role == FRONT:
        rules = [Ingress(f"{role}-app", node.port, from_cidr=ANYWHERE)]
        rules.append(Ingress(f"{role}-ping", None, from_cidr=ANYWHERE))
        if ssh_from is not None:
            rules.append(Ingress(f"{role}-ssh", SSH_PORT, from_cidr=ssh_from))
        return tuple(rules)
    rules = [
        Ingress(f"{role}-app", node.port, from_role=FRONT),
        Ingress(f"{role}-ping", None, from_role=FRONT),
    ]
    if ssh_from is not None:
        rules.append(Ingress(f"{role}-ssh", SSH_PORT, from_role=FRONT))
    return tuple(rules)
