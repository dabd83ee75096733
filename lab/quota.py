"""What a stack asks of an OpenStack project's quotas, summed from the topology model.

Pure: no cloud, no Pulumi. The preflight (preflight/checks.py) compares these sums with the
project's free quota before anything is created; the instructor's class console sums them over
a whole class. Flavor sizes are the one input that only the cloud knows, so they are passed in.

What counts, and why each count is what the program declares (tests/unit/test_quota.py checks
every sum against the resources the program declares under mocks):
- one server, one port and one security group per node; a floating IP per exposed node;
- one network and one subnet per topology subnet; one router per topology router, one port and
  one interface per router interface;
- per node's group: its ingress rules as lab/openstack_plan.py plans them, and the two egress
  rules (IPv4, IPv6) Neutron adds to every new group, which count against the quota;
- one DHCP port per subnet: clouds with a DHCP agent create it in the project (the test cloud
  has none, so it is headroom there);
- one key pair when `sshPublicKey` asks the program to create `<student>-key`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields

from lab.config import LabConfig
from lab.names import ROLES, Role
from lab.openstack_plan import ingress_rules
from lab.topology import Topology

# Rules Neutron puts into every new security group (egress, IPv4 and IPv6).
DEFAULT_RULES_PER_GROUP = 2


@dataclass(frozen=True)
class FlavorSize:
    vcpus: int
    ram_mib: int


@dataclass(frozen=True)
class Needs:
    """Counts of what one stack (or a class of stacks) creates, per quota-limited resource."""

    instances: int = 0
    cores: int = 0
    ram_mib: int = 0
    key_pairs: int = 0
    networks: int = 0
    subnets: int = 0
    ports: int = 0
    routers: int = 0
    router_interfaces: int = 0  # no quota of their own; each takes one of the ports above
    floating_ips: int = 0
    security_groups: int = 0
    security_group_rules: int = 0

    def __add__(self, other: Needs) -> Needs:
        return Needs(
            **{f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        )

    def items(self) -> list[tuple[str, int]]:
        """(resource, count) in a fixed order, for tables."""
        return [(f.name, getattr(self, f.name)) for f in fields(self)]


def flavors_by_role(config: LabConfig) -> dict[Role, str]:
    """The flavor of each VM: `flavorByRole` over `flavor`."""
    return {role: config.flavor_for(role) or "" for role in ROLES}


def stack_needs(config: LabConfig, topology: Topology, flavors: Mapping[str, FlavorSize]) -> Needs:
    """What deploying `topology` with `config` creates in the project.

    A flavor missing from `flavors` adds no cores or RAM: the preflight reports the flavor
    itself, and a quota table built on a guess would only add noise.
    """
    by_role = flavors_by_role(config)
    sizes = [flavors.get(by_role[node.role]) for node in topology.nodes]
    nodes = len(topology.nodes)
    router_interfaces = sum(len(router.interfaces) for router in topology.routers)
    ssh_from = str(config.ssh_allowed_cidr) if config.ssh_allowed_cidr else None
    ingress = sum(len(ingress_rules(node, ssh_from)) for node in topology.nodes)
    return Needs(
        instances=nodes,
        cores=sum(size.vcpus for size in sizes if size is not None),
        ram_mib=sum(size.ram_mib for size in sizes if size is not None),
        key_pairs=1 if config.ssh_public_key else 0,
        networks=len(topology.subnets),
        subnets=len(topology.subnets),
        ports=nodes + router_interfaces + len(topology.subnets),
        routers=len(topology.routers),
        router_interfaces=router_interfaces,
        floating_ips=sum(1 for node in topology.nodes if node.exposed),
        security_groups=nodes,
        security_group_rules=ingress + nodes * DEFAULT_RULES_PER_GROUP,
    )


def total_needs(needs: Iterable[Needs]) -> Needs:
    """The sum over several stacks (a class sharing one project)."""
    total = Needs()
    for item in needs:
        total += item
    return total
