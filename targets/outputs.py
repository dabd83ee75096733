"""What every target returns, so both export the same stack outputs."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from lab.names import FRONT


@dataclass(frozen=True)
class StackOutputs:
    calculator_url: pulumi.Output[str]
    frontend_address: pulumi.Output[str]  # floating IP (OpenStack) or host address (Docker)
    floating_ips: pulumi.Output[dict[str, str]]
    private_ips: pulumi.Output[dict[str, str]]

    def export(self, topology: str, target: str, ssh_user: str | None = None) -> None:
        pulumi.export("calculatorUrl", self.calculator_url)
        pulumi.export("frontendFloatingIp", self.frontend_address)
        pulumi.export("floatingIps", self.floating_ips)
        pulumi.export("privateIps", self.private_ips)
        pulumi.export("topology", topology)
        pulumi.export("target", target)
        if ssh_user is not None:
            # The services have no floating IP: the front end is the jump host.
            pulumi.export(
                "sshCommands",
                pulumi.Output.all(self.frontend_address, self.private_ips).apply(
                    lambda args: ssh_commands(ssh_user, args[0], args[1])
                ),
            )


def ssh_commands(user: str, front_address: str, private_ips: dict[str, str]) -> dict[str, str]:
    """VM name -> the ssh command that reaches it: the front end directly, the rest through it."""
    return {
        name: f"ssh {user}@{front_address}"
        if name.endswith(f"-{FRONT}")
        else f"ssh -J {user}@{front_address} {user}@{ip}"
        for name, ip in private_ips.items()
    }
