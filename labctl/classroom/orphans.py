"""What an update that lost its state backend left on the Docker engine outside the state.

The engine creates a container, then records it in the state; when the backend is gone, the
record fails and the update stops, so the next `up` knows nothing of the containers and
networks it made meanwhile and creates them again: a name conflict for a container, a second
network of the same name (Docker allows that). Before recovering such a stack, `lab class up`
removes the student's containers and networks (found by the `calculator-lab.student` label every
resource of the lab carries) that the state does not hold. They hold no data of their own (the
calculator's containers are rebuilt from the image), so the next `up` makes them again, once.
Only called when the stack's lock was stale (its process gone): nobody else is updating it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping

from pulumi.automation import Deployment, Stack

from lab.names import STUDENT_LABEL

_KINDS = {
    "container": "docker:index/container:Container",
    "network": "docker:index/network:Network",
}


def remove_docker_orphans(stack: Stack, student: str, env: Mapping[str, str]) -> list[str]:
    """Remove the student's labelled containers and networks the stack's state does not hold,
    and the pending creates the state recorded for them; the names of what was removed."""
    exported = stack.export_stack()
    deployment = dict(exported.deployment or {})
    resources = deployment.get("resources") or []
    known = {
        kind: {str((r.get("outputs") or {}).get("id") or r.get("id")) for r in resources
               if r.get("type") == token}
        for kind, token in _KINDS.items()
    }  # fmt: skip
    removed: list[str] = []
    for kind in ("container", "network"):  # containers first: a network in use cannot go
        for item_id, name in _labelled(kind, student, env):
            if item_id in known[kind] or any(k.startswith(item_id) for k in known[kind]):
                continue
            remove = ["docker", kind, "rm", *(["--force"] if kind == "container" else []), item_id]
            subprocess.run(remove, env=dict(env), check=True, capture_output=True, timeout=120)
            removed.append(f"{kind} {name}")
    # Creates the state recorded as begun: what they made was among the orphans, and is gone.
    pending = deployment.get("pending_operations") or []
    if any(op.get("type") == "creating" for op in pending):
        deployment["pending_operations"] = [op for op in pending if op.get("type") != "creating"]
        stack.import_stack(Deployment(version=exported.version, deployment=deployment))
    return removed


def _labelled(kind: str, student: str, env: Mapping[str, str]) -> list[tuple[str, str]]:
    listing = [
        "docker", kind, "ls", *(["--all"] if kind == "container" else []), "--no-trunc",
        "--filter", f"label={STUDENT_LABEL}={student}", "--format", "{{json .}}",
    ]  # fmt: skip
    done = subprocess.run(
        listing, env=dict(env), check=True, capture_output=True, text=True, timeout=60
    )
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    return [(row["ID"], row.get("Names") or row.get("Name") or row["ID"]) for row in rows]
