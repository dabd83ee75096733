"""The preflight inside the Pulumi program: run before the first resource is declared.

Runs only for the OpenStack target, when the provider would find credentials (OS_CLOUD,
OS_AUTH_URL, or `openstack:cloud` / `openstack:authUrl`), and never under Pulumi's mocks
(unit tests). A preview with `externalNetworkId` set and no cloud answering at the auth URL
is the documented offline preview: it goes on with a warning, checking nothing of the cloud
(see docs/first-up.md). An `up` never goes on without the checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
from pulumi.runtime import mocks, settings

from lab.config import LabConfig
from lab.replacement import Seen
from preflight.checks import check
from preflight.connection import (
    CloudNotAnswering,
    CloudUnreachable,
    connect,
    credentials_present,
)
from preflight.reading import read_cloud, read_servers
from preflight.token import VARIABLE, digest, judge
from targets.config_source import read_namespace

PROVIDER = "openstack"
NOT_CHECKED_OFFLINE = (
    "image, flavors, external network, key pair, quota and student id are not checked"
)


def provider_settings() -> dict[str, str]:
    """The stack's `openstack:*` settings (keys without the namespace)."""
    return {key: str(value) for key, value in read_namespace(PROVIDER).items()}


@dataclass(frozen=True)
class CloudSeen:
    """What the preflight read that the program uses beyond its checks, so nothing is read
    twice: the project's servers (None when not read) and the external network's id."""

    servers: Mapping[str, tuple[Seen, ...]] | None = None
    external_network_id: str | None = None


NOT_READ = CloudSeen()


def run_preflight(config: LabConfig) -> CloudSeen:
    """Raise `pulumi.RunError` listing every problem, or return (perhaps after notes) what
    was read."""
    if config.target != "openstack" or isinstance(settings.get_monitor(), mocks.MockMonitor):
        return NOT_READ
    provider = provider_settings()
    if not credentials_present(os.environ, provider):
        pulumi.log.info(f"No OpenStack credentials: {NOT_CHECKED_OFFLINE}")
        return NOT_READ
    stack = pulumi.get_stack()
    skip = False
    if (token := os.environ.get(VARIABLE)) is not None:
        # `lab class up` checked this very stack moments ago (preflight/token.py says when the
        # token counts); the line says which way it went, in the program's own output.
        verdict = judge(token, stack, digest(stack, config, provider, os.environ))
        pulumi.log.info(verdict.line)
        skip = verdict.skip
    try:
        conn, cloud = connect(os.environ, provider)
    except CloudNotAnswering as err:
        if pulumi.runtime.is_dry_run() and config.external_network_id:
            # The documented offline preview: the provider needs some auth URL to start, and
            # with the network's id it needs no answer from it.
            pulumi.log.warn(f"{err}. Previewing offline: {NOT_CHECKED_OFFLINE}")
            return NOT_READ
        raise pulumi.RunError(str(err)) from None
    except CloudUnreachable as err:
        raise pulumi.RunError(str(err)) from None
    try:
        if skip:
            # Checked by the class; which servers failed or went since is the stack's own.
            return CloudSeen(servers=read_servers(conn, cloud))
        facts = read_cloud(conn, cloud)
        report = check(facts, [(stack, config)])
    except CloudUnreachable as err:
        raise pulumi.RunError(str(err)) from None
    finally:
        conn.close()
    for note in report.notes:
        pulumi.log.warn(note)
    if not report.ok:
        raise pulumi.RunError(
            f"preflight on {cloud}: stack {stack} cannot be deployed as configured;"
            " nothing was created:\n  " + report.render().replace("\n", "\n  ")
        )
    found = facts.networks.get(config.external_network or "")
    return CloudSeen(facts.servers, found[0] if found is not None else None)
