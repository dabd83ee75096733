"""Connecting to a cloud as the OpenStack provider would, with failures in one line."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any


class CloudUnreachable(Exception):
    """Authentication or connection failed; the message names cloud, user and auth URL."""


class CloudNotAnswering(CloudUnreachable):
    """Nothing answered at the auth URL (as opposed to credentials being refused)."""


class CloudReadFailed(CloudUnreachable):
    """Logged in, but reading what the checks need failed (an API error, a missing right)."""


# `openstack:*` provider settings -> openstacksdk's connect() arguments.
_PROVIDER_KEYS = {
    "cloud": "cloud",
    "authUrl": "auth_url",
    "userName": "username",
    "userId": "user_id",
    "password": "password",
    "tenantName": "project_name",
    "tenantId": "project_id",
    "userDomainName": "user_domain_name",
    "userDomainId": "user_domain_id",
    "projectDomainName": "project_domain_name",
    "projectDomainId": "project_domain_id",
    "domainName": "domain_name",
    "region": "region_name",
    "applicationCredentialId": "application_credential_id",
    "applicationCredentialSecret": "application_credential_secret",
    "cacertFile": "cacert",
}
_ENV_MARKERS = ("OS_CLOUD", "OS_AUTH_URL")


def credentials_present(env: Mapping[str, str], provider: Mapping[str, str]) -> bool:
    """Whether the provider would find a cloud: OS_CLOUD / OS_AUTH_URL, or provider settings."""
    return any(env.get(k) for k in _ENV_MARKERS) or bool(
        provider.get("cloud") or provider.get("authUrl")
    )


def connect(env: Mapping[str, str], provider: Mapping[str, str]) -> tuple[Any, str]:
    """An authenticated openstacksdk connection and a description of the cloud, or
    `CloudUnreachable` with one line naming the cloud, the user and the auth URL."""
    import keystoneauth1.exceptions as ks_exc
    import openstack
    import openstack.exceptions as os_exc

    arguments: dict[str, Any] = {
        _PROVIDER_KEYS[k]: v for k, v in provider.items() if k in _PROVIDER_KEYS and v
    }
    if str(provider.get("insecure", "")).lower() == "true":
        arguments["verify"] = False
    cloud = arguments.get("cloud") or env.get("OS_CLOUD") or ""
    described = (
        f"cloud '{cloud}'"
        if cloud
        else "the cloud of the openstack:* settings"
        if arguments.get("auth_url")
        else "the cloud of the OS_* variables"
    )
    # keystoneauth logs a warning of its own before failing; the error below says it all.
    logging.getLogger("keystoneauth").setLevel(logging.ERROR)
    try:
        conn = openstack.connect(**arguments)
    except (os_exc.ConfigException, ks_exc.ClientException) as err:
        raise CloudUnreachable(f"OpenStack: cannot configure {described}: {err}") from None
    auth = conn.config.get_auth_args() if hasattr(conn, "config") else {}
    user = auth.get("username") or auth.get("user_id") or auth.get("application_credential_id")
    url = auth.get("auth_url") or "(no auth URL)"
    who = f"{described} (user {user or '?'}, auth URL {url})"
    try:
        conn.authorize()
    except (ks_exc.ClientException, os_exc.SDKException) as err:
        chain = _chain(err)
        reason = first_line(chain[-1])
        if any(isinstance(e, ks_exc.Unauthorized) for e in chain) or "401" in str(err):
            raise CloudUnreachable(
                f"OpenStack refused the credentials of {who}: {reason}; check the password,"
                " user and project (openrc, clouds.yaml or openstack:* config)"
            ) from None
        if any(isinstance(e, (ks_exc.ConnectionError, ks_exc.DiscoveryFailure)) for e in chain):
            raise CloudNotAnswering(
                f"OpenStack cannot be reached for {who}: {reason}; check the auth URL and"
                " that the cloud is up"
            ) from None
        raise CloudUnreachable(f"OpenStack: cannot log in to {who}: {reason}") from None
    return conn, who


def _chain(err: BaseException) -> list[BaseException]:
    """The exception and its causes, outermost first (the last is the root cause)."""
    chain = [err]
    while (cause := chain[-1].__cause__ or chain[-1].__context__) is not None and len(chain) < 20:
        chain.append(cause)
    return chain


def first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0]
