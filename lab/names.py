"""The lab's vocabulary, defined once: roles, their ports, physical names, tags and labels.

The program, the policy pack, the `lab` command and the tests import these; nothing else writes
a role's port or a tag's spelling out. The calculator app keeps its own default ports (guests
run it without this package); tests/unit/test_names.py pins them to `PORTS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, TypeVar

PROJECT: Final = "calculator-lab"

_Value = TypeVar("_Value")


def config_key(name: str, namespace: str = PROJECT) -> str:
    """A config key as stack files and the engine spell it: `calculator-lab:image`."""
    return f"{namespace}:{name}"


def bare_key(key: str, namespace: str = PROJECT) -> str | None:
    """`image` for `calculator-lab:image`; None for a key of another namespace (`aws:region`)."""
    prefix = config_key("", namespace)
    return key.removeprefix(prefix) if key.startswith(prefix) else None


def namespace_values(config: Mapping[str, _Value], namespace: str = PROJECT) -> dict[str, _Value]:
    """One namespace's values out of a whole stack's config, keyed without the prefix."""
    return {
        bare: value
        for key, value in config.items()
        if (bare := bare_key(key, namespace)) is not None
    }


Role = Literal["front", "sum", "sub", "mul", "div"]
ROLES: Final[tuple[Role, ...]] = ("front", "sum", "sub", "mul", "div")
SERVICE_ROLES: Final[tuple[Role, ...]] = ROLES[1:]
FRONT: Final[Role] = "front"

# The handout's ports: the front end on 50000, the four services after it.
PORTS: Final[dict[Role, int]] = {
    "front": 50000,
    "sum": 50001,
    "sub": 50002,
    "mul": 50003,
    "div": 50004,
}
SERVICE_PORT_RANGE: Final = (PORTS["sum"], PORTS["div"])
SSH_PORT: Final = 22
# The oldest python3 the calculator runs on (apps/calculator); a VM image needs at least this.
GUEST_PYTHON_FLOOR: Final = (3, 8)

# Host part of the front end's address; the services follow it in ROLES order (.10 to .14).
FIRST_NODE_HOST: Final = 10

# OpenStack tags are "key=value" strings; Docker labels are a map with dotted keys.
ROLE_TAG_PREFIX: Final = f"{PROJECT}:role="
STUDENT_TAG_PREFIX: Final = f"{PROJECT}:student="
# Which Pulumi stack owns a student's networks: the preflight refuses a second stack with the
# same student id.
STACK_TAG_PREFIX: Final = f"{PROJECT}:stack="
ROLE_LABEL: Final = f"{PROJECT}.role"
STUDENT_LABEL: Final = f"{PROJECT}.student"
# Marks an image as a lab snapshot (a Glance property, a Docker label); its value is the
# snapshot's full name. The student label alone would also match the Docker target's built
# calculator image, which carries it.
SNAPSHOT_LABEL: Final = f"{PROJECT}.snapshot"
# A server's metadata key and a container's label for the replacement trigger it was created
# under (lab/replacement.py).
TRIGGER_METADATA: Final = f"{PROJECT}:trigger"
TRIGGER_LABEL: Final = f"{PROJECT}.trigger"


def role_tag(role: str) -> str:
    return f"{ROLE_TAG_PREFIX}{role}"


def student_tag(student: str) -> str:
    return f"{STUDENT_TAG_PREFIX}{student}"


def stack_tag(stack: str) -> str:
    return f"{STACK_TAG_PREFIX}{stack}"


def node_tags(student: str, role: str) -> list[str]:
    # The policy pack recognises the front end by its role tag.
    return [role_tag(role), student_tag(student)]


def student_labels(student: str) -> dict[str, str]:
    return {STUDENT_LABEL: student}


def physical_name(student: str, what: str) -> str:
    """Every cloud or engine object is named `<student>-<what>`, so a class shares a project."""
    return f"{student}-{what}"
