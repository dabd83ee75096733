"""PrivateNetwork: a tenant network with one IPv4 subnet, its gateway, DNS and host routes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from components.naming import cidr_slug
from specs.openstack import NetworkSpec


@dataclass(frozen=True)
class SubnetRef:
    """Where a port goes: what the router and the VMs of a subnet need of it."""

    network_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]


class PrivateNetwork(pulumi.ComponentResource):
    """A network and subnet; host routes are separate resources so they can change in place."""

    network_id: pulumi.Output[str]
    """The Neutron network's id."""
    subnet_id: pulumi.Output[str]
    """The IPv4 subnet's id."""

    def __init__(
        self, name: str, args: NetworkSpec, opts: pulumi.ResourceOptions | None = None
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
        for route in args.host_routes:
            openstack.networking.SubnetRoute(
                f"{name}-route-{cidr_slug(route.destination)}",
                subnet_id=subnet.id,
                destination_cidr=route.destination,
                next_hop=route.next_hop,
                opts=child,
            )

        self.network_id = network.id
        self.subnet_id = subnet.id
        self.register_outputs({"network_id": self.network_id, "subnet_id": self.subnet_id})

    @property
    def ref(self) -> SubnetRef:
        return SubnetRef(self.network_id, self.subnet_id)
