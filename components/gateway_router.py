"""GatewayRouter: a Neutron router with interfaces at fixed addresses and extra routes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_openstack as openstack

from components.naming import cidr_slug


@dataclass(frozen=True)
class RouterPortSpec:
    key: str  # short logical name of the subnet, used in child resource names
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    ip_address: str


@dataclass(frozen=True)
class GatewayRouterArgs:
    physical_name: str
    interfaces: Sequence[RouterPortSpec]
    # None: an internal router with no way out, like the lab's inter-subnet router.
    external_network_id: pulumi.Input[str] | None = None
    routes: Sequence[tuple[str, str]] = ()  # (destination CIDR, next hop)
    tags: Sequence[str] = field(default_factory=tuple)


class GatewayRouter(pulumi.ComponentResource):
    """Interfaces are attached through ports we create, because attaching a subnet directly
    always takes the subnet's gateway address, and the lab wants .253 and .254 on one subnet."""

    router_id: pulumi.Output[str]
    """The router's id."""
    interface_ids: list[pulumi.Output[str]]
    """One router-interface id per entry of `args.interfaces`, in order."""

    def __init__(
        self, name: str, args: GatewayRouterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:GatewayRouter", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        router = openstack.networking.Router(
            f"{name}-router",
            name=args.physical_name,
            admin_state_up=True,
            external_network_id=args.external_network_id,
            tags=list(args.tags),
            opts=child,
        )
        interfaces: list[openstack.networking.RouterInterface] = []
        for spec in args.interfaces:
            port = openstack.networking.Port(
                f"{name}-{spec.key}-port",
                name=f"{args.physical_name}-{spec.key}",
                network_id=spec.network_id,
                fixed_ips=[
                    openstack.networking.PortFixedIpArgs(
                        subnet_id=spec.subnet_id, ip_address=spec.ip_address
                    )
                ],
                # Security groups never apply to router ports; asking for none avoids the
                # project's default group being attached and listed for nothing.
                no_security_groups=True,
                admin_state_up=True,
                tags=list(args.tags),
                opts=child,
            )
            interfaces.append(
                openstack.networking.RouterInterface(
                    f"{name}-{spec.key}-interface",
                    router_id=router.id,
                    port_id=port.id,
                    opts=child,
                )
            )
        for destination, next_hop in args.routes:
            openstack.networking.RouterRoute(
                f"{name}-route-{cidr_slug(destination)}",
                router_id=router.id,
                destination_cidr=destination,
                next_hop=next_hop,
                # Neutron rejects a next hop that is not on one of the router's subnets yet.
                opts=pulumi.ResourceOptions(parent=self, depends_on=interfaces),
            )

        self.router_id = router.id
        self.interface_ids = [interface.id for interface in interfaces]
        self.register_outputs({"router_id": self.router_id, "interface_ids": self.interface_ids})
