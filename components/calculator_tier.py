"""CalculatorTier: the calculator's VMs, each behind a security group of its own.

It takes one spec per VM (address, image, flavor, user data, ingress rules) and creates, for
each, a security group with those rules and an ExposedVM. A rule names where traffic may come
from: a CIDR, or the members of another VM's group (by that VM's key), never both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from components.exposed_vm import ExposedVM, ExposedVMArgs

ICMP_ECHO_REQUEST = 8


@dataclass(frozen=True)
class IngressRule:
    key: str  # unique in the tier; names the rule resource
    port: int | None  # TCP port, or None for ICMP echo
    from_cidr: str | None = None
    from_node: str | None = None  # another TierNode's key: members of its group


@dataclass(frozen=True)
class SubnetRef:
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]


@dataclass(frozen=True)
class TierNode:
    key: str  # e.g. the role: names the node's child resources
    physical_name: str
    description: str  # of its security group
    subnet: SubnetRef
    fixed_ip: str
    image_name: str
    flavor_name: str
    user_data: str
    ingress: Sequence[IngressRule]
    exposed: bool = False  # gets a floating IP from the pool
    tags: Sequence[str] = ()


@dataclass(frozen=True)
class CalculatorTierArgs:
    nodes: Sequence[TierNode]
    floating_ip_pool: str
    key_pair: pulumi.Input[str] | None = None
    # Neutron binds a floating IP only once the subnet has a router to the external network.
    floating_ip_depends_on: Sequence[pulumi.Resource] = ()


class CalculatorTier(pulumi.ComponentResource):
    private_ips: pulumi.Output[dict[str, str]]
    """VM name -> fixed address."""
    floating_ips: pulumi.Output[dict[str, str]]
    """VM name -> floating address (only exposed VMs have one)."""
    frontend_floating_ip: pulumi.Output[str]
    """The exposed VM's public address."""

    def __init__(
        self, name: str, args: CalculatorTierArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:CalculatorTier", name, None, opts)
        self._name = name
        self._args = args

        # Every group before any rule: a rule may name another node's group.
        groups = {node.key: self._security_group(node) for node in args.nodes}
        for node in args.nodes:
            for rule in node.ingress:
                self._rule(rule, groups[node.key], groups)
        vms = {node.key: self._vm(node, groups[node.key]) for node in args.nodes}

        exposed = [(n, vms[n.key]) for n in args.nodes if n.exposed]
        if len(exposed) != 1:
            raise ValueError("exactly one node (the front end) must be exposed")
        front, front_vm = exposed[0]
        if front_vm.floating_ip is None:
            raise AssertionError("an exposed node has a floating IP")

        names = [node.physical_name for node in args.nodes]
        self.private_ips = pulumi.Output.all(*[vm.fixed_ip for vm in vms.values()]).apply(
            lambda ips: dict(zip(names, ips, strict=True))
        )
        self.frontend_floating_ip = front_vm.floating_ip
        self.floating_ips = front_vm.floating_ip.apply(lambda ip: {front.physical_name: ip})
        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "floating_ips": self.floating_ips,
                "frontend_floating_ip": self.frontend_floating_ip,
            }
        )

    def _security_group(self, node: TierNode) -> openstack.networking.SecGroup:
        return openstack.networking.SecGroup(
            f"{self._name}-{node.key}-sg",
            name=node.physical_name,
            description=node.description,
            tags=list(node.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rule(
        self,
        rule: IngressRule,
        group: openstack.networking.SecGroup,
        groups: Mapping[str, openstack.networking.SecGroup],
    ) -> openstack.networking.SecGroupRule:
        if (rule.from_cidr is None) == (rule.from_node is None):
            raise ValueError(f"rule {rule.key}: give exactly one of from_cidr and from_node")
        if rule.port is None:
            protocol, low, high = "icmp", ICMP_ECHO_REQUEST, 0  # type 8, code 0
        else:
            protocol, low, high = "tcp", rule.port, rule.port
        return openstack.networking.SecGroupRule(
            f"{self._name}-{rule.key}",
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv4",
            protocol=protocol,
            port_range_min=low,
            port_range_max=high,
            remote_ip_prefix=rule.from_cidr,
            remote_group_id=groups[rule.from_node].id if rule.from_node is not None else None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _vm(self, node: TierNode, group: openstack.networking.SecGroup) -> ExposedVM:
        args = self._args
        return ExposedVM(
            f"{self._name}-{node.key}",
            ExposedVMArgs(
                physical_name=node.physical_name,
                network_id=node.subnet.network_id,
                subnet_id=node.subnet.subnet_id,
                fixed_ip=node.fixed_ip,
                security_group_ids=[group.id],
                image_name=node.image_name,
                flavor_name=node.flavor_name,
                user_data=node.user_data,
                key_pair=args.key_pair,
                floating_ip_pool=args.floating_ip_pool if node.exposed else None,
                floating_ip_depends_on=args.floating_ip_depends_on,
                tags=node.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
