"""PrivateNetwork: a tenant network with one IPv4 subnet, its gateway, DNS and host routes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

from components.naming import cidr_slug


@dataclass(frozen=True)
class PrivateNetworkArgs:
    physical_name: str  # carries the student id so a class can share one project
    cidr: str
    gateway_ip: str  # the address the subnet's router interface will take
    dhcp_pool: tuple[str, str]  # first and last dynamic address
    dns_nameservers: Sequence[str] = ()
    # (destination CIDR, next hop) pairs pushed to VMs by DHCP (option 121).
    host_routes: Sequence[tuple[str, str]] = ()
    tags: Sequence[str] = field(default_factory=tuple)


class PrivateNetwork(pulumi.ComponentResource):
    """A network and subnet; host routes are separate resources so they can change in place."""

    network_id: pulumi.Output[str]
    """The Neutron network's id."""
    subnet_id: pulumi.Output[str]
    """The IPv4 subnet's id."""

    def __init__(
        self, name: str, args: PrivateNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:PrivateNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        network = openstack.networking.Network(
            f"{name}-network",
            name=args.physical_name,
            admin_state_up=True,
            tags=list(args.tags),
            opts=child,
        )
        subnet = openstack.networking.Subnet(
            f"{name}-subnet",
            name=args.physical_name,
            network_id=network.id,
            cidr=args.cidr,
            ip_version=4,
            gateway_ip=args.gateway_ip,
            enable_dhcp=True,
            allocation_pools=[
                openstack.networking.SubnetAllocationPoolArgs(
                    start=args.dhcp_pool[0], end=args.dhcp_pool[1]
                )
            ],
            dns_nameservers=list(args.dns_nameservers),
            tags=list(args.tags),
            opts=child,
        )
        for destination, next_hop in args.host_routes:
            openstack.networking.SubnetRoute(
                f"{name}-route-{cidr_slug(destination)}",
                subnet_id=subnet.id,
                destination_cidr=destination,
                next_hop=next_hop,
                opts=child,
            )

        self.network_id = network.id
        self.subnet_id = subnet.id
        self.register_outputs({"network_id": self.network_id, "subnet_id": self.subnet_id})
