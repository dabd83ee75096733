"""The preflight inside the Pulumi program: run before the first resource is declared.

Runs only for the OpenStack target, when the provider would find credentials (OS_CLOUD,
OS_AUTH_URL, or `openstack:cloud` / `openstack:authUrl`), and never under Pulumi's mocks
(unit tests). Without credentials a preview stays offline: nothing is checked, and the
provider itself needs `externalNetworkId` to avoid a look-up (see docs/first-up.md).
"""

from __future__ import annotations

import os

import pulumi
from pulumi.runtime import config as runtime_config
from pulumi.runtime import mocks, settings

from lab.config import LabConfig
from targets.preflight import CloudUnreachable, check, connect, credentials_present, read_cloud

PROVIDER = "openstack"


def provider_settings() -> dict[str, str]:
    """The stack's `openstack:*` settings (keys without the namespace)."""
    prefix = f"{PROVIDER}:"
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {k.removeprefix(prefix): str(v) for k, v in merged.items() if k.startswith(prefix)}


def run_preflight(config: LabConfig) -> None:
    """Raise `pulumi.RunError` listing every problem, or return (perhaps after notes)."""
    if config.target != "openstack" or isinstance(settings.get_monitor(), mocks.MockMonitor):
        return
    provider = provider_settings()
    if not credentials_present(os.environ, provider):
        pulumi.log.info("preflight skipped: no OpenStack credentials (offline preview)")
        return
    stack = pulumi.get_stack()
    try:
        conn, cloud = connect(os.environ, provider)
    except CloudUnreachable as err:
        raise pulumi.RunError(str(err)) from None
    try:
        report = check(read_cloud(conn, cloud), [(stack, config)])
    finally:
        conn.close()
    for note in report.notes:
        pulumi.log.warn(note)
    if not report.ok:
        raise pulumi.RunError(
            f"preflight on {cloud}: stack {stack} cannot be deployed as configured;"
            " nothing was created:\n  " + report.render().replace("\n", "\n  ")
        )
