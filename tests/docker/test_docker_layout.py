"""The Docker target's layout on a real engine, without Pulumi's engine.

The program runs under mocks (as in tests/unit) and every network and container it declares
is created with the docker CLI from exactly those inputs, after building the image from
apps/calculator/Dockerfile on the local base image with no network. Then, against real
containers: `(5+6)*2` answers 22 through the published port; the services are closed to the
host (checked structurally: no host address on their bridge, no host route through it, no
published port) and have no way out; the calculator runs as nobody with no capability.

Traffic goes only to 127.0.0.1 and, from inside containers, to containers this test created.
The lab subnets are not the defaults (192.168.1/2) so this test can run next to a `dev` stack.
"""

from __future__ import annotations

import shlex
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.cloud_init import app_files
from tests import docker_client
from tests.docker_client import BASE_IMAGE, STUDENT_LABEL, Docker
from tests.unit.program import Program, run

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
CIDRS = {
    "client": {"clientCidr": "10.231.1.0/24", "serviceCidr": "10.231.2.0/24"},
    "single": {"networkCidr": "10.231.3.0/24"},
}
HEALTHY_WITHIN = 90.0
PROBE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def docker() -> Docker:
    engine = docker_client.connect()
    docker_client.require_base_image(engine)
    return engine


@dataclass
class Deployed:
    program: Program
    student: str
    port: int
    image_id: str
    build_seconds: float
    up_seconds: float


def _create_network(docker: Docker, inputs: dict[str, Any]) -> None:
    args = ["network", "create", "--driver", inputs["driver"]]
    if inputs.get("internal"):
        args.append("--internal")
    for ipam in inputs.get("ipamConfigs", []):
        args += ["--subnet", ipam["subnet"]]
        if "gateway" in ipam:
            args += ["--gateway", ipam["gateway"]]
    for key, value in inputs.get("options", {}).items():
        args += ["-o", f"{key}={value}"]
    for label in inputs.get("labels", []):
        args += ["--label", f"{label['label']}={label['value']}"]
    docker(*args, inputs["name"])


def _create_container(docker: Docker, inputs: dict[str, Any], image_id: str) -> None:
    name = inputs["name"]
    first, *others = inputs["networksAdvanced"]
    args = ["create", "--name", name, "--hostname", inputs["hostname"], "--user", inputs["user"]]
    args += ["--restart", inputs["restart"], "--network", first["name"]]
    if "ipv4Address" in first:
        args += ["--ip", first["ipv4Address"]]
    if inputs.get("init"):
        args.append("--init")
    if inputs.get("readOnly"):
        args.append("--read-only")
    args += [f"--cap-drop={cap}" for cap in inputs["capabilities"].get("drops", [])]
    args += [f"--cap-add={cap}" for cap in inputs["capabilities"].get("adds", [])]
    args += [f"--security-opt={opt}" for opt in inputs.get("securityOpts", [])]
    args += [f"--sysctl={k}={v}" for k, v in inputs.get("sysctls", {}).items()]
    args += [f"--env={line}" for line in inputs.get("envs", [])]
    args += [f"--label={item['label']}={item['value']}" for item in inputs["labels"]]
    for port in inputs.get("ports", []):
        args += ["--publish", f"{port['ip']}:{int(port['external'])}:{int(port['internal'])}/tcp"]
    health = inputs["healthcheck"]
    assert health["tests"][0] == "CMD"
    # The CLI only takes a shell form; the same argv, quoted, runs the same probe.
    args += ["--health-cmd", shlex.join(health["tests"][1:])]
    args += ["--health-interval", health["interval"], "--health-timeout", health["timeout"]]
    args += ["--health-retries", str(int(health["retries"]))]
    args += ["--health-start-period", health["startPeriod"]]
    docker(*args, image_id, *inputs["command"])
    for network in others:
        extra = ["--ip", network["ipv4Address"]] if "ipv4Address" in network else []
        docker("network", "connect", *extra, network["name"], name)


def _remove_everything_of(docker: Docker, student: str, image: str | None) -> None:
    objects = docker.labelled(f"{STUDENT_LABEL}={student}", check=False)
    if objects["containers"]:
        docker("rm", "-f", *objects["containers"], check=False)
    if objects["networks"]:
        docker("network", "rm", *objects["networks"], check=False)
    if image:
        docker("image", "rm", "-f", image, check=False)


def _wait_healthy(docker: Docker, names: list[str]) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {
            c["Name"].lstrip("/"): c["State"].get("Health", {}).get("Status", "none")
            for c in docker.inspect(*names)
        }
        if all(state == "healthy" for state in states.values()):
            return
        time.sleep(1)
    logs = {name: docker("logs", "--tail", "20", name, check=False).stderr for name in names}
    raise AssertionError(f"not healthy within {HEALTHY_WITHIN}s: {states}\n{logs}")


@pytest.fixture(scope="module", params=["client", "single"])
def deployed(request: pytest.FixtureRequest, docker: Docker) -> Iterator[Deployed]:
    topology: str = request.param
    student = f"calclab-dl-{uuid.uuid4().hex[:6]}"
    port = docker_client.free_port()
    config = {
        "target": "docker",
        "topology": topology,
        "student": student,
        "dockerBaseImage": BASE_IMAGE,
        "dockerHostPort": port,
        **CIDRS[topology],
    }
    program = run(config, stack=student)
    (image,) = program.of_type(":RemoteImage")
    build = image.inputs["build"]
    image_name = image.inputs["name"]
    try:
        started = time.monotonic()
        # --network none: the recipe must build offline when the base image has iproute2.
        docker(
            "build",
            "--quiet",
            "--network",
            "none",
            "--file",
            str(REPO / build["context"] / build["dockerfile"]),
            *[f"--build-arg={k}={v}" for k, v in build["buildArgs"].items()],
            *[f"--label={k}={v}" for k, v in build["labels"].items()],
            "--tag",
            image_name,
            str(REPO / build["context"]),
            env={"DOCKER_BUILDKIT": "1"},
            timeout=600,
        )
        image_id = docker("image", "inspect", "--format", "{{.Id}}", image_name).stdout.strip()
        build_seconds = time.monotonic() - started
        started = time.monotonic()
        for network in program.of_type(":Network"):
            _create_network(docker, network.inputs)
        containers = program.of_type(":Container")
        for container in containers:
            _create_container(docker, container.inputs, image_id)
        names = [c.inputs["name"] for c in containers]
        # Routers first, as the program's depends_on has it.
        routers = [n for n in names if n.endswith("-router")]
        if routers:
            docker("start", *routers)
        docker("start", *[n for n in names if n not in routers])
        _wait_healthy(docker, names)
        up_seconds = time.monotonic() - started
        yield Deployed(program, student, port, image_id, build_seconds, up_seconds)
    finally:
        started = time.monotonic()
        _remove_everything_of(docker, student, image_name)
        print(f"\n{topology}: removed in {time.monotonic() - started:.1f}s")
        assert docker.labelled(f"{STUDENT_LABEL}={student}")["containers"] == []


def _containers(deployed: Deployed) -> dict[str, dict[str, Any]]:
    return {c.inputs["name"]: c.inputs for c in deployed.program.of_type(":Container")}


def _role(deployed: Deployed, name: str) -> str:
    return name.removeprefix(f"{deployed.student}-")


def _post(url: str, body: str) -> tuple[int, str]:
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    request.add_header("Content-Type", "text/plain")
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read().decode().strip()


def test_expression_is_answered_through_the_published_port(deployed: Deployed) -> None:
    # calculatorUrl of the stack outputs, exactly as the program computes it.
    url = deployed.program.outputs["calculatorUrl"]
    assert url == f"http://127.0.0.1:{deployed.port}"
    assert _post(url + "/", "(5+6)*2") == (200, "22")
    print(f"build {deployed.build_seconds:.1f}s, containers healthy {deployed.up_seconds:.1f}s")


def test_only_the_front_end_publishes_and_no_lab_bridge_has_a_host_address(
    docker: Docker, deployed: Deployed
) -> None:
    infos = {c["Name"].lstrip("/"): c for c in docker.inspect(*_containers(deployed))}
    published = {
        name: info["HostConfig"]["PortBindings"]
        for name, info in infos.items()
        if info["HostConfig"]["PortBindings"]
    }
    assert published == {
        f"{deployed.student}-front": {
            "50000/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(deployed.port)}]
        }
    }
    lab_networks = [
        n.inputs["name"] for n in deployed.program.of_type(":Network") if "ipamConfigs" in n.inputs
    ]
    assert lab_networks
    for network in lab_networks:
        addresses = docker_client.host_ipv4_addresses(docker.bridge(network))
        assert addresses == [], f"the host has an address on {network}: {addresses}"


def test_host_has_no_route_to_any_service(docker: Docker, deployed: Deployed) -> None:
    # Structural: the route the host would use never enters one of this stack's bridges. No
    # packet is sent to the service addresses (without our bridge they may lead off-machine).
    ours = {docker.bridge(n.inputs["name"]) for n in deployed.program.of_type(":Network")}
    for name, inputs in _containers(deployed).items():
        if inputs.get("ports"):
            continue
        for network in inputs["networksAdvanced"]:
            device = docker_client.host_route_device(network["ipv4Address"])
            assert device not in ours, f"host reaches {name} through {device}"


def test_services_have_no_way_out_but_through_the_lab(docker: Docker, deployed: Deployed) -> None:
    front = docker.inspect(f"{deployed.student}-front")[0]
    public_ip = front["NetworkSettings"]["Networks"][f"{deployed.student}-public"]["IPAddress"]
    probe = (
        "import socket, sys; s = socket.socket(); s.settimeout(float(sys.argv[2])); "
        "sys.exit(0 if s.connect_ex((sys.argv[1], 50000)) == 0 else 1)"
    )
    # The front end answers on its public address from the host's side...
    for name in _containers(deployed):
        role = _role(deployed, name)
        if role in ("front",) or role.endswith("-router"):
            continue
        # ...but a service cannot reach the public network at all.
        result = docker(
            "exec", name, "python3", "-c", probe, public_ip, str(PROBE_TIMEOUT), check=False
        )
        assert result.returncode == 1, f"{name} reached the public network"
    routes = docker("exec", f"{deployed.student}-front", "ip", "route").stdout
    assert routes.startswith("default via"), routes
    default_device = routes.split()[4]
    # The front end's default route (and so its published port) is on the public network.
    public_if = docker(
        "exec", f"{deployed.student}-front", "ip", "-o", "-4", "addr", "show", "dev", default_device
    ).stdout
    assert f" {public_ip}/" in public_if


def _process_status(docker: Docker, container: str) -> dict[str, str]:
    """/proc/<pid>/status of the calculator process inside `container`."""
    script = (
        "import os\n"
        "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
        "    cmd = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')\n"
        "    if b'calculator' in cmd and b'-m' in cmd:\n"
        "        print(open(f'/proc/{pid}/status').read())\n"
        "        break\n"
    )
    text = docker("exec", container, "python3", "-c", script).stdout
    return dict(
        (key.strip(), value.strip())
        for key, _, value in (line.partition(":") for line in text.splitlines())
        if key
    )


def test_calculators_run_as_nobody_with_no_capability(docker: Docker, deployed: Deployed) -> None:
    for name in _containers(deployed):
        if name.endswith("-router"):
            continue
        status = _process_status(docker, name)
        assert status, f"no calculator process found in {name}"
        assert status["Uid"].split() == ["65534"] * 4, name
        assert status["Gid"].split() == ["65534"] * 4, name
        assert status["CapEff"] == status["CapPrm"] == "0000000000000000", name
        assert status["CapBnd"] == "0000000000000000", name
        assert status["NoNewPrivs"] == "1", name


def test_router_forwards_and_routes_are_in_place(docker: Docker, deployed: Deployed) -> None:
    containers = _containers(deployed)
    routers = [name for name in containers if name.endswith("-router")]
    if not any(c.get("sysctls") for c in containers.values()):
        assert routers == []  # single topology: nothing to route
        return
    (router,) = routers
    forwarding = docker("exec", router, "cat", "/proc/sys/net/ipv4/ip_forward").stdout
    assert forwarding.strip() == "1"
    sum_routes = docker("exec", f"{deployed.student}-sum", "ip", "route").stdout
    assert "10.231.1.0/24 via 10.231.2.254" in sum_routes
    front_routes = docker("exec", f"{deployed.student}-front", "ip", "route").stdout
    assert "10.231.2.0/24 via 10.231.1.253" in front_routes


def test_image_holds_the_calculator_files_only(docker: Docker, deployed: Deployed) -> None:
    listing = docker(
        "run",
        "--rm",
        "--network",
        "none",
        deployed.image_id,
        "python3",
        "-c",
        "import os\n"
        "for root, _, files in os.walk('/opt/calculator-lab/calculator'):\n"
        "    for f in files: print(os.path.relpath(os.path.join(root, f),"
        " '/opt/calculator-lab/calculator'))",
    ).stdout.split()
    assert sorted(listing) == sorted(f.relative_path for f in app_files())
    config = docker.inspect(deployed.image_id)[0]["Config"]
    assert config["User"] == "65534:65534"
