"""The OpenStack target: the model (topology and lab/openstack_plan.py) handed to the components.

The mirror image of targets/docker.py: subnets become PrivateNetworks, routers GatewayRouters,
and the plan's VMs the CalculatorTier's nodes.
"""

from __future__ import annotations

import pulumi
import pulumi_openstack as openstack

from components.calculator_tier import (
    CalculatorTier,
    CalculatorTierArgs,
    IngressRule,
    SubnetRef,
    TierNode,
)
from components.gateway_router import GatewayRouter, GatewayRouterArgs, RouterPortSpec
from components.private_network import PrivateNetwork, PrivateNetworkArgs
from lab.config import LabConfig
from lab.names import physical_name, stack_tag, student_tag
from lab.openstack_plan import VmPlan, plan_vms
from lab.topology import Topology
from targets.outputs import StackOutputs


def deploy_openstack(config: LabConfig, topology: Topology) -> StackOutputs:
    student = config.student
    tags = [student_tag(student), stack_tag(pulumi.get_stack())]

    networks = {
        subnet.key: PrivateNetwork(
            subnet.key,
            PrivateNetworkArgs(
                physical_name=physical_name(student, subnet.key),
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
                physical_name=physical_name(student, router.key),
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
            "ssh-key", name=physical_name(student, "key"), public_key=config.ssh_public_key
        ).name

    # LabConfig guarantees it for the openstack target; the check narrows the type.
    assert config.external_network is not None
    subnets = {key: SubnetRef(n.network_id, n.subnet_id) for key, n in networks.items()}
    tier = CalculatorTier(
        "calculator",
        CalculatorTierArgs(
            nodes=[
                _tier_node(vm, subnets[vm.subnet], student) for vm in plan_vms(config, topology)
            ],
            floating_ip_pool=config.external_network,
            key_pair=key_pair,
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


def _tier_node(vm: VmPlan, subnet: SubnetRef, student: str) -> TierNode:
    return TierNode(
        key=vm.role,
        physical_name=vm.name,
        description=f"calculator {vm.role} ({student})",
        subnet=subnet,
        fixed_ip=vm.fixed_ip,
        image_name=vm.image,
        flavor_name=vm.flavor,
        user_data=vm.user_data,
        ingress=[IngressRule(r.key, r.port, r.from_cidr, r.from_role) for r in vm.ingress],
        exposed=vm.exposed,
        tags=vm.tags,
    )
