"""The OpenStack target: the plan's specs (lab/openstack_plan.py) handed to the components.

Subnets become PrivateNetworks, routers GatewayRouters, VMs the CalculatorTier; this module
only wires what Pulumi creates (ids) from one component into the next.
"""

from __future__ import annotations

import uuid

import pulumi
import pulumi_openstack as openstack

from components.calculator_tier import CalculatorTier, CalculatorTierArgs
from components.gateway_router import GatewayRouter, GatewayRouterArgs
from components.private_network import PrivateNetwork
from lab.config import LabConfig
from lab.names import physical_name
from lab.openstack_plan import plan_openstack, server_names
from lab.replacement import replacement_triggers
from lab.topology import Topology
from targets.outputs import StackOutputs
from targets.preflight_run import CloudSeen


def deploy_openstack(config: LabConfig, topology: Topology, seen: CloudSeen) -> StackOutputs:
    triggers = None
    if seen.servers is not None:
        # A server in ERROR or gone gets a new trigger, so a plain `up` replaces it.
        triggers = replacement_triggers(
            server_names(config, topology), seen.servers, fresh=lambda: uuid.uuid4().hex
        )
    plan = plan_openstack(config, topology, pulumi.get_stack(), triggers)
    subnets = {spec.key: PrivateNetwork(spec.key, spec).ref for spec in plan.networks}
    external_network_id = _external_network_id(config, seen)
    routers = [
        GatewayRouter(
            f"{spec.key}-router",
            GatewayRouterArgs(spec, subnets, external_network_id),
        )
        for spec in plan.routers
    ]

    key_pair: pulumi.Input[str] | None = config.key_pair
    if config.ssh_public_key:
        key_pair = openstack.compute.Keypair(
            "ssh-key",
            name=physical_name(config.student, "key"),
            public_key=config.ssh_public_key,
        ).name

    # LabConfig guarantees it for the openstack target; the check narrows the type.
    assert config.external_network is not None
    tier = CalculatorTier(
        "calculator",
        CalculatorTierArgs(
            front=plan.front,
            services=plan.services,
            subnets=subnets,
            floating_ip_pool=config.external_network,
            key_pair=key_pair,
            floating_ip_depends_on=routers,
        ),
    )
    port = topology.front.port
    return StackOutputs(
        calculator_url=tier.frontend_floating_ip.apply(lambda ip: f"http://{ip}:{port}"),
        frontend_address=tier.frontend_floating_ip,
        floating_ips=tier.floating_ips,
        private_ips=tier.private_ips,
    )


def _external_network_id(config: LabConfig, seen: CloudSeen) -> pulumi.Input[str]:
    if config.external_network_id:
        return config.external_network_id
    if seen.external_network_id:
        return seen.external_network_id  # the preflight found it by name: not looked up again
    # Only when no id is configured and the preflight did not run: this look-up needs a live
    # cloud even for a preview.
    return openstack.networking.get_network_output(name=config.external_network).id
