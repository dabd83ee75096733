"""GatewayRouter: a Neutron router with interfaces at fixed addresses and extra routes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from components.naming import cidr_slug
from components.private_network import SubnetRef
from specs.openstack import RouterSpec


@dataclass(frozen=True)
class GatewayRouterArgs:
    spec: RouterSpec
    subnets: Mapping[str, SubnetRef]  # every subnet an interface names, by key
    # Used only when the spec is external: the network its gateway is on.
    external_network_id: pulumi.Input[str] | None = None


class GatewayRouter(pulumi.ComponentResource):
    """Interfaces are attached through ports we create, because attaching a subnet directly
    always takes the subnet's gateway address, and the lab wants .253 and .254 on one subnet."""

    router_id: pulumi.Output[str]
    """The router's id."""
    interface_ids: list[pulumi.Output[str]]
    """One router-interface id per interface of the spec, in order."""

    def __init__(
        self, name: str, args: GatewayRouterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:GatewayRouter", name, None, opts)
        spec = args.spec
        if spec.external and args.external_network_id is None:
            raise ValueError(f"router {spec.key} is external: give external_network_id")
        child = pulumi.ResourceOptions(parent=self)

        router = openstack.networking.Router(
            f"{name}-router",
            name=spec.physical_name,
            admin_state_up=True,
            external_network_id=args.external_network_id if spec.external else None,
            tags=list(spec.tags),
            opts=child,
        )
        interfaces: list[openstack.networking.RouterInterface] = []
        for interface in spec.interfaces:
            subnet = args.subnets[interface.subnet]
            port = openstack.networking.Port(
                f"{name}-{interface.subnet}-port",
                name=f"{spec.physical_name}-{interface.subnet}",
                network_id=subnet.network_id,
                fixed_ips=[
                    openstack.networking.PortFixedIpArgs(
                        subnet_id=subnet.subnet_id, ip_address=interface.ip_address
                    )
                ],
                # Security groups never apply to router ports; asking for none avoids the
                # project's default group being attached and listed for nothing.
                no_security_groups=True,
                admin_state_up=True,
                tags=list(spec.tags),
                opts=child,
            )
            interfaces.append(
                openstack.networking.RouterInterface(
                    f"{name}-{interface.subnet}-interface",
                    router_id=router.id,
                    port_id=port.id,
                    opts=child,
                )
            )
        for route in spec.routes:
            openstack.networking.RouterRoute(
                f"{name}-route-{cidr_slug(route.destination)}",
                router_id=router.id,
                destination_cidr=route.destination,
                next_hop=route.next_hop,
                # Neutron rejects a next hop that is not on one of the router's subnets yet.
                opts=pulumi.ResourceOptions(parent=self, depends_on=interfaces),
            )

        self.router_id = router.id
        self.interface_ids = [interface.id for interface in interfaces]
        self.register_outputs({"router_id": self.router_id, "interface_ids": self.interface_ids})
