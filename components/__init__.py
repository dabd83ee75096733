"""Reusable Pulumi components for the lab's OpenStack topologies.

Each component takes `(name, args, opts=None)`, parents every child to itself and ends with
`register_outputs`. None of them reads stack configuration: they receive typed args.
"""

from components.calculator_containers import (
    CalculatorContainers,
    CalculatorContainersArgs,
    CalculatorImage,
    CalculatorImageArgs,
    LabNetworks,
    LabNetworksArgs,
)
from components.calculator_tier import CalculatorTier, CalculatorTierArgs, SubnetRef
from components.exposed_vm import ExposedVM, ExposedVMArgs
from components.gateway_router import GatewayRouter, GatewayRouterArgs, RouterPortSpec
from components.private_network import PrivateNetwork, PrivateNetworkArgs

__all__ = [
    "CalculatorContainers",
    "CalculatorContainersArgs",
    "CalculatorImage",
    "CalculatorImageArgs",
    "CalculatorTier",
    "CalculatorTierArgs",
    "ExposedVM",
    "ExposedVMArgs",
    "GatewayRouter",
    "GatewayRouterArgs",
    "LabNetworks",
    "LabNetworksArgs",
    "PrivateNetwork",
    "PrivateNetworkArgs",
    "RouterPortSpec",
    "SubnetRef",
]
