"""What every target returns, so both export the same stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class StackOutputs:
    calculator_url: pulumi.Output[str]
    frontend_address: pulumi.Output[str]  # floating IP (OpenStack) or host address (Docker)
    floating_ips: pulumi.Output[dict[str, str]]
    private_ips: pulumi.Output[dict[str, str]]

    def export(self, topology: str, target: str) -> None:
        pulumi.export("calculatorUrl", self.calculator_url)
        pulumi.export("frontendFloatingIp", self.frontend_address)
        pulumi.export("floatingIps", self.floating_ips)
        pulumi.export("privateIps", self.private_ips)
        pulumi.export("topology", topology)
        pulumi.export("target", target)
