"""The student's OpenStack connection for the `lab` commands that talk to the cloud directly
(`image upload`, the console logs of `check`): the log-in and its errors are the preflight's,
so a missing or wrong credential reads the same here as in `pulumi up`.

openstacksdk is imported only when a command connects: `lab --help` stays fast.
"""

from __future__ import annotations

import os
from typing import Any

from lab.names import student_tag
from labctl.errors import LabError
from preflight.connection import CloudUnreachable, credentials_present, first_line
from preflight.connection import connect as log_in

__all__ = ["CloudError", "connect", "first_line", "holdings", "sdk_errors"]


class CloudError(LabError):
    """No connection to the cloud; the message names the cloud, the user and the auth URL."""


def connect() -> Any:
    """An authenticated connection from OS_CLOUD (clouds.yaml) or an openrc's OS_* variables."""
    if not credentials_present(os.environ, {}):
        raise CloudError(
            "no OpenStack credentials: set OS_CLOUD to your cloud in clouds.yaml,"
            " or source your project's openrc (OS_AUTH_URL, OS_USERNAME, ...)"
        )
    try:
        conn, _ = log_in(os.environ, {})
    except CloudUnreachable as error:
        raise CloudError(str(error)) from None
    return conn


def sdk_errors() -> tuple[type[Exception], ...]:
    """What openstacksdk and keystoneauth raise for a refused request or an unreachable
    service, as opposed to a bug of ours."""
    import keystoneauth1.exceptions as ks_exc
    import openstack.exceptions as os_exc

    return (ks_exc.ClientException, os_exc.SDKException)


def holdings(conn: Any, student: str) -> dict[str, list[str]]:
    """What the project holds of one student, by physical name (`<student>-…`) or, for floating
    IPs, by the student's tag: only that student's resources are looked at, never the whole
    project's (a cloud shared by a class, or by other tests). Empty kinds are left out."""
    project = conn.current_project_id
    net = conn.network
    prefix, tag = f"{student}-", student_tag(student)

    def named(items: Any) -> list[str]:
        return sorted(i.name for i in items if (i.name or "").startswith(prefix))

    found = {
        "servers": named(conn.compute.servers()),
        "ports": named(net.ports(project_id=project)),
        "networks": named(net.networks(project_id=project)),
        "routers": named(net.routers(project_id=project)),
        "security_groups": named(net.security_groups(project_id=project)),
        "keypairs": named(conn.compute.keypairs()),
        "floating_ips": sorted(
            i.floating_ip_address for i in net.ips(project_id=project) if tag in (i.tags or [])
        ),
    }
    return {kind: names for kind, names in found.items() if names}
