"""The lab's topology as local Docker objects: the calculator image, bridge networks, containers.

- CalculatorImage builds a Dockerfile on the engine and removes the image again on tear-down.
- LabNetworks creates one bridge network per spec (CIDR, reserved gateway, no host address,
  internal or not) plus a small public network: the analog of the external network.
- CalculatorContainers runs each container spec: routers first, then the nodes.

The components take the specs of specs/docker.py, with every value worked out (addresses,
commands, environment, health checks, published port); they import nothing from the program.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_docker as docker

from specs.docker import PUBLIC, ContainerSpec, ImageSpec, NetworksSpec, PublishedPort

# No address for the host on a lab subnet's bridge: the host has no route into it, and the
# gateway address Docker gives the containers is held by nobody.
NO_HOST_ADDRESS = {"com.docker.network.bridge.inhibit_ipv4": "true"}
# A routed subnet cannot be "internal" (see LabNetworks); this keeps it from being NATed out.
NO_MASQUERADE = {"com.docker.network.bridge.enable_ip_masquerade": "false"}
HEALTH_INTERVAL = "2s"
HEALTH_TIMEOUT = "3s"
HEALTH_RETRIES = 5
# `pulumi up` waits for every container to report healthy, so it ends with a working stack.
WAIT_TIMEOUT_SECONDS = 90


def _healthcheck(test: Sequence[str]) -> docker.ContainerHealthcheckArgs:
    return docker.ContainerHealthcheckArgs(
        tests=list(test),
        interval=HEALTH_INTERVAL,
        timeout=HEALTH_TIMEOUT,
        retries=HEALTH_RETRIES,
        start_period="2s",
    )


def _labels(labels: Mapping[str, str]) -> list[docker.ContainerLabelArgs]:
    return [docker.ContainerLabelArgs(label=k, value=v) for k, v in sorted(labels.items())]


# --- CalculatorImage ---------------------------------------------------------------------------


class CalculatorImage(pulumi.ComponentResource):
    """The calculator image, built by the engine from the Dockerfile in the build context."""

    image_id: pulumi.Output[str]
    """The built image's id (sha256:...), what containers run."""
    image_name: pulumi.Output[str]
    """repository:tag of the built image."""

    def __init__(
        self, name: str, args: ImageSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:CalculatorImage", name, None, opts)
        # RemoteImage, not docker.Image: only RemoteImage deletes the local image on destroy
        # (keep_locally=False); docker.Image leaves its tag behind.
        image = docker.RemoteImage(
            f"{name}-image",
            name=args.name,
            build=docker.RemoteImageBuildArgs(
                context=args.context,
                dockerfile="Dockerfile",
                build_args={"BASE_IMAGE": args.base_image},
                labels=dict(args.labels),
                # The engine's own build endpoint: works with any engine version and needs no
                # buildx plugin or builder instance on the machine.
                use_legacy_builder=True,
            ),
            keep_locally=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image_id = image.image_id
        self.image_name = image.name
        self.register_outputs({"image_id": self.image_id, "image_name": self.image_name})


# --- LabNetworks -------------------------------------------------------------------------------


class LabNetworks(pulumi.ComponentResource):
    """One bridge per spec (its CIDR, no host address) and the public bridge.

    A subnet is Docker-"internal" (no route out at all) unless a router container forwards
    through it: Docker filters internal bridges with iptables rules that drop every packet
    whose destination lies outside the subnet, and with bridge netfilter on (Docker turns it
    on) that includes packets bridged to the router. A routed subnet is closed instead by
    having no host address and no masquerading.
    """

    names: dict[str, pulumi.Output[str]]
    """Network key -> Docker network name."""
    public_name: pulumi.Output[str]
    """The public network, the front end's way to the host."""

    def __init__(
        self, name: str, args: NetworksSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("calculator-lab:components:LabNetworks", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = [docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())]
        self.names = {}
        for spec in args.bridges:
            network = docker.Network(
                f"{name}-{spec.key}",
                name=spec.name,
                driver="bridge",
                internal=spec.internal,
                ipam_configs=[docker.NetworkIpamConfigArgs(subnet=spec.cidr, gateway=spec.gateway)],
                options=NO_HOST_ADDRESS if spec.internal else {**NO_HOST_ADDRESS, **NO_MASQUERADE},
                labels=labels,
                opts=child,
            )
            self.names[spec.key] = network.name
        # Docker picks a free subnet for it: nothing in the lab addresses it.
        public = docker.Network(
            f"{name}-public",
            name=args.public_name,
            driver="bridge",
            labels=labels,
            opts=child,
        )
        self.public_name = public.name
        self.register_outputs({"names": self.names, "public_name": self.public_name})


# --- CalculatorContainers ----------------------------------------------------------------------


@dataclass(frozen=True)
class CalculatorContainersArgs:
    routers: Sequence[ContainerSpec]
    front: ContainerSpec  # the one container with a published port
    services: Sequence[ContainerSpec]
    published: PublishedPort
    image_id: pulumi.Input[str]
    networks: Mapping[str, pulumi.Input[str]]  # network key -> network name
    public_network: pulumi.Input[str]


class CalculatorContainers(pulumi.ComponentResource):
    """The calculator's containers, and the router containers the topology needs."""

    private_ips: pulumi.Output[dict[str, str]]
    """Container name -> its fixed address (on its first network)."""
    floating_ips: pulumi.Output[dict[str, str]]
    """Container name -> host address its port is published on."""
    frontend_address: pulumi.Output[str]
    """The host address of the published port."""

    def __init__(
        self,
        name: str,
        args: CalculatorContainersArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("calculator-lab:components:CalculatorContainers", name, None, opts)
        self._name = name
        self._args = args

        # Routers first: a node whose first packet needs the router must not start before it.
        routers = [self._container(spec, routers=()) for spec in args.routers]
        front = self._container(args.front, routers, args.published)
        services = [self._container(spec, routers) for spec in args.services]

        specs = [args.front, *args.services]
        fixed = [(spec.name, spec.attachments[0][1] or "") for spec in specs]
        self.private_ips = pulumi.Output.all(*[c.name for c in [front, *services]]).apply(
            lambda _: dict(fixed)
        )
        host, front_name = args.published.host_address, args.front.name
        self.frontend_address = front.id.apply(lambda _: host)
        self.floating_ips = self.frontend_address.apply(lambda address: {front_name: address})
        self.register_outputs(
            {
                "private_ips": self.private_ips,
                "floating_ips": self.floating_ips,
                "frontend_address": self.frontend_address,
            }
        )

    def _container(
        self,
        spec: ContainerSpec,
        routers: Sequence[docker.Container],
        published: PublishedPort | None = None,
    ) -> docker.Container:
        args = self._args
        networks = [
            docker.ContainerNetworksAdvancedArgs(
                name=args.public_network if key == PUBLIC else args.networks[key],
                ipv4_address=address,
            )
            for key, address in spec.attachments
        ]
        ports = None
        if published is not None:
            ports = [
                docker.ContainerPortArgs(
                    internal=published.internal,
                    external=published.external,
                    ip=published.host_address,
                    protocol="tcp",
                )
            ]
        return docker.Container(
            f"{self._name}-{spec.key}",
            name=spec.name,
            hostname=spec.hostname,
            image=spec.image or args.image_id,
            command=list(spec.command),
            user=spec.user,
            envs=list(spec.env) or None,
            init=True,
            read_only=True,
            capabilities=docker.ContainerCapabilitiesArgs(
                drops=["ALL"], adds=list(spec.capabilities) or None
            ),
            security_opts=["no-new-privileges:true"],
            sysctls=dict(spec.sysctls) if spec.sysctls else None,
            networks_advanced=networks,
            ports=ports,
            healthcheck=_healthcheck(spec.health),
            wait=True,
            wait_timeout=WAIT_TIMEOUT_SECONDS,
            restart="on-failure",
            labels=_labels(spec.labels),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=list(routers) if spec.after_routers and routers else None,
                # Names are fixed, so a replacement must remove the old container first.
                delete_before_replace=True,
                # A stopped or removed container gets a new one (lab/replacement.py).
                replacement_trigger=spec.replacement_trigger,
            ),
        )
