"""Docker specs: the calculator image, the bridge networks and the containers.

Every value is worked out (addresses, commands, environment, health checks, the published
port); what only exists once Pulumi has created it (the built image's id, the networks' names
as the engine returns them) is handed to the components beside the spec.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The key of the public network in a container's attachments: the analog of the external
# network, which only the front end joins.
PUBLIC = "public"


@dataclass(frozen=True)
class ImageSpec:
    """The calculator image, built by the engine from a Dockerfile (CalculatorImage)."""

    # repository:tag; the tag changes with the image's content, so a rebuilt image never
    # shares a name with the one it replaces.
    name: str
    context: str  # directory holding the Dockerfile and the calculator package
    base_image: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BridgeSpec:
    key: str  # the topology's subnet key: names the resource, containers attach by it
    name: str
    cidr: str
    gateway: str  # the address Docker reserves; kept off every container's address
    internal: bool  # no route out at all; a routed subnet cannot be (see LabNetworks)


@dataclass(frozen=True)
class NetworksSpec:
    """One bridge per lab subnet and the public bridge (LabNetworks)."""

    bridges: tuple[BridgeSpec, ...]
    public_name: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PublishedPort:
    """The front end's port on the host: the Docker version of the floating IP."""

    internal: int
    external: int
    host_address: str


@dataclass(frozen=True)
class ContainerSpec:
    key: str  # resource-name suffix: the role, or "<router>-router"
    name: str
    hostname: str
    command: tuple[str, ...]
    user: str
    env: tuple[str, ...]  # KEY=value, sorted
    attachments: tuple[tuple[str, str | None], ...]  # (BridgeSpec key or PUBLIC, fixed address)
    health: tuple[str, ...]  # the health check's test
    labels: Mapping[str, str]
    capabilities: tuple[str, ...] = ()  # added; every other one is dropped
    sysctls: Mapping[str, str] | None = None
    after_routers: bool = False  # its first packet may need a router container
    image: str | None = None  # None: the calculator image built for the stack
    # A new value replaces the container (lab/replacement.py), which records it in its labels;
    # None when the engine's containers were not read (Pulumi's mocks).
    replacement_trigger: str | None = None
