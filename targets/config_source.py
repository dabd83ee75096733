"""The one place the program reads the stack's configuration from the Pulumi engine."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import config as runtime_config

from lab.names import namespace_values


def read_namespace(namespace: str) -> dict[str, Any]:
    """Every `<namespace>:*` value of the stack, keyed without the prefix.

    Reading the whole namespace (not key by key) is what lets validation reject a misspelt
    key instead of silently using a default.
    """
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return namespace_values(merged, namespace)
