"""Reusable Pulumi components for the lab's topologies.

OpenStack: `private_network.PrivateNetwork`, `gateway_router.GatewayRouter`,
`exposed_vm.ExposedVM`, `calculator_tier.CalculatorTier`. Docker:
`calculator_containers.CalculatorImage`, `LabNetworks`, `CalculatorContainers`.

Each component takes `(name, args, opts=None)`, parents every child to itself and ends with
`register_outputs`. None of them reads stack configuration: they receive typed args.
Import them from their modules: this package imports nothing itself, so a stack of one
target never loads the other target's provider SDK.
"""
