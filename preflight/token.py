"""The class's preflight, handed to each student's program so it need not read the cloud again.

`lab class up` reads the cloud once and checks every student (labctl/classroom/preflight.py);
each student's `pulumi up` would then read it again in the program's own preflight (about 4 s
each, through the same API). The class runner instead puts a token in the engine's environment
(`CALCLAB_PREFLIGHT_TOKEN`): when the check was made, on which cloud, and per stack a digest of
what was checked. The program skips its read only when the token

- is fresh: made less than FRESH_SECONDS ago (and not in the future), so a token left in a
  shell, or a run whose later students start long after the check, reads the cloud again;
- names its own stack with the digest of its own configuration, provider settings and OpenStack
  variables (secrets left out), so a stack whose values or cloud changed since is read again.

It is a guard against skipping by accident, not a secret: anyone who can set the engine's
environment can also edit the program. Standard library and the model only: both sides import
it, the class console and the program.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass

from lab.config import LabConfig

VARIABLE = "CALCLAB_PREFLIGHT_TOKEN"
# Long enough for the first workers of a class to start their `up` (seconds after the check),
# short enough that a class's check never stands in for one made later in the day.
FRESH_SECONDS = 300
# A clock that disagrees by less than this (the console and the program run on one machine,
# but a token made "in the future" must not live longer) is not a reason to read again.
SKEW_SECONDS = 5
# How the program's line begins when it skips (the class report counts those lines).
SKIPPED = "preflight: checked by lab class"
# OpenStack variables that choose the cloud, project and user; secrets are not digested.
_SECRET_PARTS = ("PASSWORD", "SECRET", "TOKEN")


@dataclass(frozen=True)
class Verdict:
    skip: bool
    line: str  # what the program logs: why it skips, or why it reads the cloud again


def digest(
    stack: str, config: LabConfig, provider: Mapping[str, str], env: Mapping[str, str]
) -> str:
    """What one stack's check depends on: its validated values, and which cloud it reads."""
    cloud = {k: v for k, v in env.items() if k.startswith("OS_") and not _secret(k)}
    document = {
        "stack": stack,
        "config": config.model_dump(mode="json"),
        "provider": {k: v for k, v in provider.items() if not _secret(k.upper())},
        "cloud": cloud,
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _secret(name: str) -> bool:
    return any(part in name for part in _SECRET_PARTS)


def issue(checked_at: float, cloud: str, digests: Mapping[str, str]) -> str:
    """The token for a class whose stacks (stack -> digest) passed the check at `checked_at`."""
    return json.dumps({"at": round(checked_at, 3), "cloud": cloud, "stacks": dict(digests)})


def judge(token: str, stack: str, own: str, now: float | None = None) -> Verdict:
    """Whether the program of `stack`, whose digest is `own`, may take the class's check."""
    now = time.time() if now is None else now
    try:
        document = json.loads(token)
        at = float(document["at"])
        cloud = str(document["cloud"])
        stacks = dict(document["stacks"])
    except (ValueError, KeyError, TypeError):
        return Verdict(False, f"preflight: {VARIABLE} is not a lab class token; reading the cloud")
    when = time.strftime("%H:%M:%S", time.localtime(at))
    age = now - at
    if age > FRESH_SECONDS or age < -SKEW_SECONDS:
        return Verdict(
            False,
            f"preflight: lab class's check of {when} is {int(age)} s old (fresh for "
            f"{FRESH_SECONDS} s); reading the cloud again",
        )
    if stacks.get(stack) != own:
        return Verdict(
            False,
            f"preflight: lab class checked {'other values' if stack in stacks else 'other stacks'}"
            f" at {when}; reading the cloud again",
        )
    return Verdict(True, f"{SKIPPED} at {when} ({cloud}), not read again")
