"""The health check's verdict on a student's calculator URL, from labctl/check.py (the one
`lab check` uses), so the class report and a single stack say the same thing."""

from __future__ import annotations

import importlib
from collections.abc import Callable

HealthCheck = Callable[[str], str]


def health_check() -> HealthCheck:
    """A function URL -> one-word verdict and detail, e.g. 'ok', 'unreachable: timed out'."""
    try:
        check = importlib.import_module("labctl.check")
    except ModuleNotFoundError:
        return lambda url: "not checked (labctl/check.py is not there yet)"
    function = getattr(check, "check_url", None)
    if function is None:
        return lambda url: "not checked (labctl.check has no check_url)"

    def verdict(url: str) -> str:
        try:
            result = function(url)
        except Exception as err:  # a checker's bug must not fail the student's row
            return f"error: {type(err).__name__}: {err}"
        return str(getattr(result, "verdict", result))

    return verdict
