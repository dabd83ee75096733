"""The floor of a Docker stack: its image, networks and containers made with the Engine API.

Plain HTTP over the engine's unix socket (the project has no Docker SDK), one connection per
call so that steps run in parallel. The steps are those of the program (components/
calculator_containers.py), from the same plan (lab/docker_plan.py): the image built from the
same context with the same build arguments and labels (the engine's build cache serves it,
as it serves the provider's build), the bridge networks with the same options, each container
created, joined to its other networks, started and waited for until its health check passes
(the provider's `wait`), the router containers before the nodes that route through them.
Health is polled every POLL seconds. Tear-down is the graph backwards: containers removed
(forced, as the provider does), then the networks and the image.
"""

from __future__ import annotations

import http.client
import io
import json
import socket
import tarfile
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from benchmarks.floor_graph import Graph, Made, Step, create, destroy, each
from components.calculator_containers import (
    HEALTH_INTERVAL,
    HEALTH_RETRIES,
    HEALTH_TIMEOUT,
    NO_HOST_ADDRESS,
    NO_MASQUERADE,
    WAIT_TIMEOUT_SECONDS,
)
from lab.cloud_init import APP_DIR, app_files
from lab.config import LabConfig
from lab.docker_plan import IMAGE_REPOSITORY, RECIPE_FILES, DockerPlan, plan_docker
from lab.names import STUDENT_LABEL, physical_name
from lab.topology import build_topology
from specs.docker import PUBLIC, ContainerSpec

POLL = 0.25
IMAGE = "docker:index/remoteImage:RemoteImage"
NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"
_SECOND = 1_000_000_000


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Engine:
    """The Docker Engine API at a unix:// DOCKER_HOST."""

    socket_path: str

    @classmethod
    def at(cls, docker_host: str) -> Engine:
        if not docker_host.startswith("unix://"):
            raise ValueError(f"DOCKER_HOST {docker_host}: only unix:// is supported")
        return cls(docker_host.removeprefix("unix://"))

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        raw: bytes | None = None,
        ok_missing: bool = False,
    ) -> Any:
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {}
        data: bytes | None = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            headers["Content-Type"] = "application/x-tar"
        connection = _UnixConnection(self.socket_path, timeout=300)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            payload = response.read()
        finally:
            connection.close()
        if response.status == 404 and ok_missing:
            return None
        if response.status >= 400:
            raise EngineError(f"{method} {path}: {response.status} {payload[:500]!r}")
        if not payload:
            return None
        if response.getheader("Content-Type", "").startswith("application/json"):
            try:
                return json.loads(payload)
            except json.JSONDecodeError:
                pass
        return payload


def _duration(text: str) -> int:
    if not text.endswith("s"):
        raise ValueError(f"duration {text}: seconds expected")
    return int(float(text[:-1]) * _SECOND)


def build_context() -> bytes:
    """The context the engine's client sends: the runtime files (.dockerignore applied)
    and the recipe, which the engine reads and leaves out of the image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        entries = [(name, (APP_DIR / name).read_bytes()) for name in RECIPE_FILES]
        entries += [(f.relative_path, f.content) for f in app_files()]
        for name, content in entries:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), 0o644
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


@dataclass
class DockerFloor:
    engine: Engine
    config: LabConfig
    plan: DockerPlan
    graph: Graph
    made: Made

    @property
    def student(self) -> str:
        return self.config.student

    def create(self) -> tuple[float, dict[str, BaseException]]:
        return create(self.graph, self.made)

    def destroy(self) -> tuple[float, dict[str, BaseException]]:
        return destroy(self.graph, self.made)

    def read(self) -> float:
        """One inspection of every object, all at once: what a refresh cannot do with less."""
        paths = {
            IMAGE: "/images/{}/json",
            NETWORK: "/networks/{}",
            CONTAINER: "/containers/{}/json",
        }
        return each(
            self.graph,
            self.made,
            lambda step, handle: self.engine.call("GET", paths[step.kind].format(handle)),
        )

    def leftovers(self) -> dict[str, list[str]]:
        return leftovers(self.engine, self.student)

    def sweep(self) -> dict[str, list[str]]:
        """Remove whatever of the floor's student is still there; what it found."""
        found = self.leftovers()
        for name in found.get("containers", []):
            self.engine.call(
                "DELETE", f"/containers/{name}", query={"force": "1", "v": "1"}, ok_missing=True
            )
        for name in found.get("networks", []):
            self.engine.call("DELETE", f"/networks/{name}", ok_missing=True)
        for name in found.get("images", []):
            self.engine.call("DELETE", f"/images/{name}", ok_missing=True)
        return found


def leftovers(engine: Engine, student: str) -> dict[str, list[str]]:
    """The containers and networks labelled for `student`, and the student's images."""
    label = json.dumps({"label": [f"{STUDENT_LABEL}={student}"]})
    containers = engine.call("GET", "/containers/json", query={"all": "1", "filters": label})
    networks = engine.call("GET", "/networks", query={"filters": label})
    repository = json.dumps({"reference": [physical_name(IMAGE_REPOSITORY, student)]})
    images = engine.call("GET", "/images/json", query={"filters": repository})
    found = {
        "containers": sorted(c["Names"][0].lstrip("/") for c in containers or []),
        "networks": sorted(n["Name"] for n in networks or []),
        "images": sorted(t for i in images or [] for t in i.get("RepoTags") or []),
    }
    return {kind: names for kind, names in found.items() if names}


def docker_floor(engine: Engine, config: LabConfig) -> DockerFloor:
    plan = plan_docker(config, build_topology(config))
    return DockerFloor(engine, config, plan, _graph(engine, plan), Made())


def _graph(engine: Engine, plan: DockerPlan) -> Graph:
    graph = Graph()
    image = plan.image

    def build(_m: Made, record: Any) -> None:
        query = {
            "t": image.name,
            "dockerfile": "Dockerfile",
            "buildargs": json.dumps({"BASE_IMAGE": image.base_image}),
            "labels": json.dumps(dict(image.labels)),
            "rm": "1",
        }
        output = engine.call("POST", "/build", query=query, raw=build_context())
        text = output.decode() if isinstance(output, bytes) else json.dumps(output)
        for line in text.splitlines():
            if line.strip() and "error" in json.loads(line):
                raise EngineError(f"build of {image.name}: {line}")
        record(engine.call("GET", f"/images/{image.name}/json")["Id"])

    graph.add(Step("image", IMAGE, (), build, lambda h: engine.call("DELETE", f"/images/{h}")))

    labels = dict(plan.networks.labels)
    for spec in plan.networks.bridges:
        body = {
            "Name": spec.name,
            "Driver": "bridge",
            "Internal": spec.internal,
            "IPAM": {"Config": [{"Subnet": spec.cidr, "Gateway": spec.gateway}]},
            "Options": NO_HOST_ADDRESS if spec.internal else {**NO_HOST_ADDRESS, **NO_MASQUERADE},
            "Labels": labels,
        }
        graph.add(
            Step(f"network:{spec.key}", NETWORK, (), _network(engine, body), _net_delete(engine))
        )
    public = {"Name": plan.networks.public_name, "Driver": "bridge", "Labels": labels}
    graph.add(Step(f"network:{PUBLIC}", NETWORK, (), _network(engine, public), _net_delete(engine)))

    routers = tuple(f"container:{router.key}" for router in plan.routers)
    for router in plan.routers:
        graph.add(_container_step(engine, plan, router, ()))
    for node in (plan.front, *plan.services):
        graph.add(_container_step(engine, plan, node, routers))
    return graph


def _network(engine: Engine, body: dict[str, Any]) -> Any:
    def make(_m: Made, record: Any) -> None:
        record(engine.call("POST", "/networks/create", body)["Id"])

    return make


def _net_delete(engine: Engine) -> Any:
    return lambda handle: engine.call("DELETE", f"/networks/{handle}")


def _container_step(
    engine: Engine, plan: DockerPlan, spec: ContainerSpec, routers: tuple[str, ...]
) -> Step:
    published = plan.published if spec is plan.front else None
    networks = [f"network:{key}" for key, _ in spec.attachments]
    deps = [
        *networks,
        *(["image"] if spec.image is None else []),
        *(routers if spec.after_routers else ()),
    ]

    def endpoint(address: str | None) -> dict[str, Any]:
        return {"IPAMConfig": {"IPv4Address": address}} if address else {}

    def make(m: Made, record: Any) -> None:
        first_key, first_address = spec.attachments[0]
        host: dict[str, Any] = {
            "Init": True,
            "ReadonlyRootfs": True,
            "CapDrop": ["ALL"],
            "CapAdd": list(spec.capabilities) or None,
            "SecurityOpt": ["no-new-privileges:true"],
            "Sysctls": dict(spec.sysctls) if spec.sysctls else None,
            "RestartPolicy": {"Name": "on-failure"},
            "NetworkMode": m[f"network:{first_key}"],
        }
        body: dict[str, Any] = {
            "Image": spec.image or m["image"],
            "Hostname": spec.hostname,
            "Cmd": list(spec.command),
            "User": spec.user,
            "Env": list(spec.env),
            "Labels": dict(spec.labels),
            "Healthcheck": {
                "Test": list(spec.health),
                "Interval": _duration(HEALTH_INTERVAL),
                "Timeout": _duration(HEALTH_TIMEOUT),
                "Retries": HEALTH_RETRIES,
                "StartPeriod": 2 * _SECOND,
            },
            "HostConfig": host,
            "NetworkingConfig": {
                "EndpointsConfig": {m[f"network:{first_key}"]: endpoint(first_address)}
            },
        }
        if published is not None:
            port = f"{published.internal}/tcp"
            body["ExposedPorts"] = {port: {}}
            host["PortBindings"] = {
                port: [{"HostIp": published.host_address, "HostPort": str(published.external)}]
            }
        made = engine.call("POST", "/containers/create", body, query={"name": spec.name})
        record(made["Id"])
        for key, address in spec.attachments[1:]:
            engine.call(
                "POST",
                f"/networks/{m[f'network:{key}']}/connect",
                {"Container": made["Id"], "EndpointConfig": endpoint(address)},
            )
        engine.call("POST", f"/containers/{made['Id']}/start")
        deadline = time.monotonic() + WAIT_TIMEOUT_SECONDS
        while True:
            state = engine.call("GET", f"/containers/{made['Id']}/json")["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            if time.monotonic() > deadline:
                raise EngineError(f"{spec.name} not healthy after {WAIT_TIMEOUT_SECONDS}s: {state}")
            time.sleep(POLL)

    def delete(handle: Any) -> None:
        engine.call("DELETE", f"/containers/{handle}", query={"force": "1", "v": "1"})

    return Step(f"container:{spec.key}", CONTAINER, tuple(deps), make, delete)
