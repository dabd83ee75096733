"""CalculatorTier: the calculator's VMs, each behind a security group of its own.

It takes the front end's spec and the services' (address, image, flavor, user data, ingress
rules) and creates, for each, a security group with those rules and an ExposedVM; only the
front end gets a floating IP. A rule names where traffic may come from: a CIDR, or the members
of another VM's group (by that VM's key).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from components.exposed_vm import ExposedVM, ExposedVMArgs
from components.private_network import SubnetRef
from specs.openstack import IngressRule, VmSpec

ICMP_ECHO_REQUEST = 8


@dataclass(frozen=True)
class CalculatorTierArgs:
    front: VmSpec  # the one VM with a floating IP
    services: Sequence[VmSpec]
    subnets: Mapping[str, SubnetRef]  # every subnet a VM names, by key
    floating_ip_pool: str  # the external network's name
    key_pair: pulumi.Input[str] | None = None
    # Neutron binds a floating IP only once the subnet has a router to the external network.
    floating_ip_depends_on: Sequence[pulumi.Resource] = ()


class CalculatorTier(pulumi.ComponentResource):
    private_ips: pulumi.Output[dict[str, str]]
    """VM name -> fixed address."""
    floating_ips: pulumi.Output[dict[str, str]]
    """VM name -> floating address (only the front end has one)."""
    frontend_floating_ip: pulumi.Output[str]
    """The front end's public address."""

    def __init__(
        self, name: str, args: CalculatorTierArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:CalculatorTier", name, None, opts)
        self._name = name
        self._args = args
        specs = [args.front, *args.services]

        # Every group before any rule: a rule may name another VM's group.
        groups = {spec.key: self._security_group(spec) for spec in specs}
        for spec in specs:
            for rule in spec.ingress:
                self._rule(rule, groups[spec.key], groups)
        vms = {spec.key: self._vm(spec, groups[spec.key]) for spec in specs}

        front_ip = vms[args.front.key].floating_ip
        if front_ip is None:
            raise AssertionError("the front end is given a pool, so it has a floating IP")
        front_name = args.front.physical_name
        names = [spec.physical_name for spec in specs]
        self.private_ips = pulumi.Output.all(*[vm.fixed_ip for vm in vms.values()]).apply(
            lambda ips: dict(zip(names, ips, strict=True))
        )
        self.frontend_floating_ip = front_ip
        self.floating_ips = front_ip.apply(lambda ip: {front_name: ip})
        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "floating_ips": self.floating_ips,
                "frontend_floating_ip": self.frontend_floating_ip,
            }
        )

    def _security_group(self, spec: VmSpec) -> openstack.networking.SecGroup:
        return openstack.networking.SecGroup(
            f"{self._name}-{spec.key}-sg",
            name=spec.physical_name,
            description=spec.description,
            tags=list(spec.tags),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rule(
        self,
        rule: IngressRule,
        group: openstack.networking.SecGroup,
        groups: Mapping[str, openstack.networking.SecGroup],
    ) -> openstack.networking.SecGroupRule:
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
            remote_group_id=groups[rule.from_vm].id if rule.from_vm is not None else None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _vm(self, spec: VmSpec, group: openstack.networking.SecGroup) -> ExposedVM:
        args = self._args
        exposed = spec is args.front
        return ExposedVM(
            f"{self._name}-{spec.key}",
            ExposedVMArgs(
                spec=spec,
                subnet=args.subnets[spec.subnet],
                security_group_ids=[group.id],
                key_pair=args.key_pair,
                floating_ip_pool=args.floating_ip_pool if exposed else None,
                floating_ip_depends_on=args.floating_ip_depends_on if exposed else (),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
