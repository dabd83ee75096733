"""CalculatorTier: the five calculator VMs and the security groups that wall them in.

Rules, least privilege first:
- front end: the calculator port (50000) and ping from anywhere; SSH only from the
  configured CIDR, and only when one is configured;
- each service: its own port, ping and SSH (the front end is the jump host) only from members
  of the front end's security group, never from a CIDR, so no other VM and no floating IP can
  reach it.
Egress keeps Neutron's default allow-all rules.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from components.exposed_vm import ExposedVM, ExposedVMArgs
from lab.cloud_init import render_user_data
from lab.topology import Node, Topology

SSH_PORT = 22
ICMP_ECHO_REQUEST = 8
ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class SubnetRef:
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]


@dataclass(frozen=True)
class CalculatorTierArgs:
    student: str
    topology: Topology
    subnets: Mapping[str, SubnetRef]  # by the topology's subnet key
    image_by_role: Mapping[str, str]
    flavor_by_role: Mapping[str, str]
    floating_ip_pool: str
    key_pair: pulumi.Input[str] | None = None
    ssh_allowed_cidr: str | None = None
    python: str = "/usr/bin/python3"
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
        topology = args.topology

        front_group = self._security_group(topology.front)
        self._rule("front-app", front_group, topology.front.port, remote_ip=ANYWHERE)
        self._rule("front-ping", front_group, None, remote_ip=ANYWHERE)
        if args.ssh_allowed_cidr is not None:
            self._rule("front-ssh", front_group, SSH_PORT, remote_ip=args.ssh_allowed_cidr)

        groups = {"front": front_group}
        for node in topology.services:
            group = self._security_group(node)
            self._rule(f"{node.role}-app", group, node.port, remote_group=front_group)
            self._rule(f"{node.role}-ping", group, None, remote_group=front_group)
            if args.ssh_allowed_cidr is not None:
                self._rule(f"{node.role}-ssh", group, SSH_PORT, remote_group=front_group)
            groups[node.role] = group

        vms = {node.role: self._vm(node, groups[node.role]) for node in topology.nodes}
        front_vm = vms["front"]
        if front_vm.floating_ip is None:  # guarded by Topology: exactly one exposed node
            raise AssertionError("the front end must have a floating IP")

        names = [self._vm_name(role) for role in vms]
        self.private_ips = pulumi.Output.all(*[vm.fixed_ip for vm in vms.values()]).apply(
            lambda ips: dict(zip(names, ips, strict=True))
        )
        self.frontend_floating_ip = front_vm.floating_ip
        self.floating_ips = front_vm.floating_ip.apply(lambda ip: {self._vm_name("front"): ip})
        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "floating_ips": self.floating_ips,
                "frontend_floating_ip": self.frontend_floating_ip,
            }
        )

    def _vm_name(self, role: str) -> str:
        return f"{self._args.student}-{role}"

    def _tags(self, role: str) -> list[str]:
        # The policy pack recognises the front end by this tag.
        return [f"calculator-lab:role={role}", f"calculator-lab:student={self._args.student}"]

    def _security_group(self, node: Node) -> openstack.networking.SecGroup:
        return openstack.networking.SecGroup(
            f"{self._name}-{node.role}-sg",
            name=self._vm_name(node.role),
            description=f"calculator {node.role} ({self._args.student})",
            tags=self._tags(node.role),
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _rule(
        self,
        key: str,
        group: openstack.networking.SecGroup,
        port: int | None,
        *,
        remote_ip: str | None = None,
        remote_group: openstack.networking.SecGroup | None = None,
    ) -> openstack.networking.SecGroupRule:
        """An ingress rule: TCP to `port`, or ICMP echo when `port` is None."""
        if port is None:
            protocol, low, high = "icmp", ICMP_ECHO_REQUEST, 0  # type 8, code 0
        else:
            protocol, low, high = "tcp", port, port
        return openstack.networking.SecGroupRule(
            f"{self._name}-{key}",
            security_group_id=group.id,
            direction="ingress",
            ethertype="IPv4",
            protocol=protocol,
            port_range_min=low,
            port_range_max=high,
            remote_ip_prefix=remote_ip,
            remote_group_id=remote_group.id if remote_group is not None else None,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _vm(self, node: Node, group: openstack.networking.SecGroup) -> ExposedVM:
        args = self._args
        subnet = args.subnets[node.subnet]
        return ExposedVM(
            f"{self._name}-{node.role}",
            ExposedVMArgs(
                physical_name=self._vm_name(node.role),
                network_id=subnet.network_id,
                subnet_id=subnet.subnet_id,
                fixed_ip=str(node.ip),
                security_group_ids=[group.id],
                image_name=args.image_by_role[node.role],
                flavor_name=args.flavor_by_role[node.role],
                user_data=render_user_data(
                    node.role, args.topology.environment(node.role), python=args.python
                ),
                key_pair=args.key_pair,
                floating_ip_pool=args.floating_ip_pool if node.exposed else None,
                floating_ip_depends_on=args.floating_ip_depends_on,
                tags=self._tags(node.role),
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
