"""Renders a Topology as OpenStack resources: networks, routers, and the calculator tier."""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from components.calculator_tier import CalculatorTier, CalculatorTierArgs, SubnetRef
from components.gateway_router import GatewayRouter, GatewayRouterArgs, RouterPortSpec
from components.private_network import PrivateNetwork, PrivateNetworkArgs
from lab.config import ROLES, LabConfig
from lab.topology import Topology
from targets.outputs import StackOutputs


def deploy_openstack(config: LabConfig, topology: Topology) -> StackOutputs:
    student = config.student
    tags = [f"calculator-lab:student={student}"]

    networks = {
        subnet.key: PrivateNetwork(
            subnet.key,
            PrivateNetworkArgs(
                physical_name=f"{student}-{subnet.key}",
                cidr=str(subnet.cidr),
                gateway_ip=str(subnet.gateway_ip),
                dhcp_pool=(str(subnet.dhcp_pool[0]), str(subnet.dhcp_pool[1])),
                dns_nameservers=[str(ip) for ip in config.dns_nameservers],
                host_routes=[(str(r.destination), str(r.next_hop)) for r in subnet.host_routes],
                tags=tags,
            ),
        )
        for subnet in topology.subnets
    }

    external_network_id = _external_network_id(config)
    routers = [
        GatewayRouter(
            f"{router.key}-router",
            GatewayRouterArgs(
                physical_name=f"{student}-{router.key}",
                external_network_id=external_network_id if router.external else None,
                interfaces=[
                    RouterPortSpec(
                        key=interface.subnet,
                        network_id=networks[interface.subnet].network_id,
                        subnet_id=networks[interface.subnet].subnet_id,
                        ip_address=str(interface.ip),
                    )
                    for interface in router.interfaces
                ],
                routes=[(str(r.destination), str(r.next_hop)) for r in router.routes],
                tags=tags,
            ),
        )
        for router in topology.routers
    ]

    key_pair: pulumi.Input[str] | None = config.key_pair
    if config.ssh_public_key:
        key_pair = openstack.compute.Keypair(
            "ssh-key", name=f"{student}-key", public_key=config.ssh_public_key
        ).name

    # LabConfig guarantees these for the openstack target; the checks narrow the types.
    assert config.external_network is not None
    assert config.image is not None
    assert config.flavor is not None
    tier = CalculatorTier(
        "calculator",
        CalculatorTierArgs(
            student=student,
            topology=topology,
            subnets={
                key: SubnetRef(network.network_id, network.subnet_id)
                for key, network in networks.items()
            },
            image_by_role={role: config.image_by_role.get(role, config.image) for role in ROLES},
            flavor_by_role={role: config.flavor_by_role.get(role, config.flavor) for role in ROLES},
            floating_ip_pool=config.external_network,
            key_pair=key_pair,
            ssh_allowed_cidr=str(config.ssh_allowed_cidr) if config.ssh_allowed_cidr else None,
            python=config.python_path,
            floating_ip_depends_on=routers,
        ),
    )
    return StackOutputs(
        calculator_url=tier.frontend_floating_ip.apply(
            lambda ip: f"http://{ip}:{topology.front.port}"
        ),
        frontend_address=tier.frontend_floating_ip,
        floating_ips=tier.floating_ips,
        private_ips=tier.private_ips,
    )


def _external_network_id(config: LabConfig) -> pulumi.Input[str]:
    if config.external_network_id:
        return config.external_network_id
    # Only when no id is configured: this look-up needs a live cloud even for a preview.
    return openstack.networking.get_network_output(name=config.external_network).id
