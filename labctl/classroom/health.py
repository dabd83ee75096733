"""The health check's verdict on a student's calculator URL: labctl/check.py's, the one
`lab check` uses, so the class report and a single stack say the same thing.

One look per student (`check_once`: the front end's /health, then `(5+6)*2`), no retries: the
VMs take minutes to boot after `up`, and `lab class status` looks again later.
"""

from __future__ import annotations

from collections.abc import Callable

from labctl.check import check_once

HealthCheck = Callable[[str], str]


def verdict(url: str) -> str:
    """'ok', or 'degraded'/'unreachable' with the first failing check's detail."""
    try:
        result, rows = check_once(url)
    except Exception as err:  # a checker's bug must not fail the student's row
        return f"not checked: {type(err).__name__}: {err}"
    failing = next((row for row in rows if not row.ok), None)
    return result if failing is None else f"{result}: {failing.name}: {failing.detail}"


def health_check() -> HealthCheck:
    return verdict
