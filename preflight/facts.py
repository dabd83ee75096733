"""What the checks know of a cloud: one snapshot of what a project and its user see."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from lab.config import LabConfig
from lab.quota import FlavorSize, Needs
from lab.replacement import Seen

StackConfig = tuple[str, LabConfig]  # (stack name, its validated configuration)
UNLIMITED = -1  # a quota's limit when the project has none


@dataclass(frozen=True)
class LabResources:
    """What the project already holds of one student id (found by the student tag)."""

    stacks: frozenset[str]  # values of the stack tags found; "" for resources without one
    names: tuple[str, ...]  # physical names, for messages
    held: Needs  # counted like Needs, to take off a re-run's quota need


@dataclass(frozen=True)
class CloudFacts:
    """A snapshot of what one project and user see; everything `check` needs."""

    cloud: str
    images: Mapping[str, str]  # name -> status
    flavors: Mapping[str, FlavorSize]
    networks: Mapping[str, tuple[str, bool]]  # name -> (id, router:external)
    key_pairs: frozenset[str]
    quota: Mapping[str, tuple[int, int]]  # Needs field -> (limit, used)
    students: Mapping[str, LabResources] = field(default_factory=dict)
    failed_servers: Mapping[str, str] = field(default_factory=dict)  # name -> Nova's fault
    # name -> Glance's (os_distro, os_version), "" where the image has no such property
    image_os: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # name -> the project's servers bearing it (lab/replacement.py decides from them)
    servers: Mapping[str, tuple[Seen, ...]] = field(default_factory=dict)
