"""Smoke tests of the local Docker engine and base image (tools/docker-engine).

They check what the Docker target relies on, against the real daemon: the base image runs
Python; a network with no host address is closed to the host while a port published on
127.0.0.1 is open; NET_ADMIN is what lets a container add a route; and a router container
with ip_forward=1 carries traffic between the lab's two subnets, with and without Docker's
`internal` flag. Traffic goes only to loopback and to containers these tests create.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import socket
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests import docker_client
from tests.docker_client import BASE_IMAGE, Docker

pytestmark = pytest.mark.docker

FRONT_SUBNET = "192.168.1.0/24"
SERVICE_SUBNET = "192.168.2.0/24"
ROUTER_FRONT_IP = "192.168.1.253"
ROUTER_SERVICE_IP = "192.168.2.254"
SERVER_PORT = 8000
# Every object gets this label, so the teardown check can find anything left behind.
SMOKE_LABEL = "org.calculator-lab.smoke"
# Long enough for a SYN and its answer on a local bridge, short enough for negative checks.
PROBE_TIMEOUT = 2.0
# Docker keeps the host from owning an address on the bridge: no host route into the subnet.
NO_HOST_ADDRESS = "com.docker.network.bridge.inhibit_ipv4=true"


@dataclass(kw_only=True)
class SmokeDocker(Docker):
    """The runner, remembering what it created so it can remove it."""

    run_id: str
    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)

    def name(self, role: str) -> str:
        return f"calclab-smoke-{self.run_id}-{role}"

    def network(
        self,
        role: str,
        subnet: str,
        *,
        internal: bool,
        host_address: bool,
        gateway: str | None = None,
    ) -> str:
        name = self.name(role)
        args = ["network", "create", "--driver", "bridge", "--subnet", subnet]
        args += ["--label", f"{SMOKE_LABEL}={self.run_id}"]
        if gateway:
            args += ["--gateway", gateway]
        if internal:
            args.append("--internal")
        if not host_address:
            args += ["--opt", NO_HOST_ADDRESS]
        proc = self(*args, name, check=False)
        if proc.returncode != 0:
            hint = ""
            if "overlap" in proc.stderr.lower():
                hint = (
                    f"\nAnother network on this daemon already uses {subnet} (a lab stack left"
                    " up?): `docker network ls` and remove it, then rerun."
                )
            raise AssertionError(f"cannot create network {name}: {proc.stderr.strip()}{hint}")
        self.networks.append(name)
        return name

    def container(
        self,
        role: str,
        network: str,
        ip: str,
        command: str,
        *,
        caps: tuple[str, ...] = (),
        sysctls: tuple[str, ...] = (),
        publish: str | None = None,
        more_networks: tuple[tuple[str, str], ...] = (),
    ) -> str:
        """Create and start a container; `more_networks` are (network, ip) attached first."""
        name = self.name(role)
        args = ["create", "--name", name, "--label", f"{SMOKE_LABEL}={self.run_id}"]
        args += ["--network", network, "--ip", ip, "--stop-timeout", "1"]
        for cap in caps:
            args += ["--cap-add", cap]
        for sysctl in sysctls:
            args += ["--sysctl", sysctl]
        if publish:
            args += ["--publish", publish]
        self(*args, BASE_IMAGE, "sh", "-c", command)
        self.containers.append(name)
        for extra_network, extra_ip in more_networks:
            self("network", "connect", "--ip", extra_ip, extra_network, name)
        self("start", name)
        return name

    def fetch_inside(self, container: str, url: str) -> str | None:
        """Body of `url` fetched from inside `container`, or None when it cannot be reached."""
        code = (
            "import sys, urllib.request\n"
            f"print(urllib.request.urlopen(sys.argv[1], timeout={PROBE_TIMEOUT}).read().decode())"
        )
        proc = self(
            "exec", container, "python3", "-c", code, url, check=False, timeout=PROBE_TIMEOUT + 20
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    def wait_serving(self, container: str, deadline_s: float = 15) -> None:
        url = f"http://127.0.0.1:{SERVER_PORT}/id"
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.fetch_inside(container, url) == container:
                return
            time.sleep(0.2)
        logs = self("logs", container, check=False)
        raise AssertionError(f"{container} never served {url}:\n{logs.stdout}{logs.stderr}")

    def remove_all(self) -> None:
        if self.containers:
            self("rm", "--force", "--volumes", *reversed(self.containers), check=False)
        for network in reversed(self.networks):
            self("network", "rm", network, check=False)
        self.containers.clear()
        self.networks.clear()

    def leftovers(self) -> list[str]:
        objects = self.labelled(f"{SMOKE_LABEL}={self.run_id}")
        return objects["containers"] + objects["networks"]


def serve(name: str, *, before: str = "") -> str:
    """Shell command: optional setup, then an HTTP server whose /id answers the container name."""
    setup = f"{before} && " if before else ""
    return (
        f"{setup}mkdir -p /tmp/www && echo {shlex.quote(name)} > /tmp/www/id"
        f" && exec python3 -m http.server {SERVER_PORT} --bind 0.0.0.0 --directory /tmp/www"
    )


@pytest.fixture(scope="session")
def docker_session() -> Docker:
    session = docker_client.connect()
    docker_client.require_base_image(session)
    return session


@pytest.fixture
def docker(docker_session: Docker) -> Iterator[SmokeDocker]:
    client = SmokeDocker(
        cli=docker_session.cli,
        host=docker_session.host,
        timeout=60,
        run_id=uuid.uuid4().hex[:8],
    )
    try:
        yield client
    finally:
        client.remove_all()
    left = client.leftovers()
    assert not left, f"objects left on the daemon after the test: {left}"


def connect_via(interface: str, ip: str, port: int) -> bool:
    """Whether the host can open a TCP connection to ip:port, sent out of `interface` only.

    Binding to the bridge keeps the probe on this machine even when the host has no route
    into the subnet (it would otherwise follow the default route off the machine).
    """
    so_bindtodevice = getattr(socket, "SO_BINDTODEVICE", 25)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, so_bindtodevice, interface.encode())
        sock.settimeout(PROBE_TIMEOUT)
        try:
            sock.connect((ip, port))
        except OSError:
            return False
        return True


def test_base_image_runs_python_and_has_iproute2(docker: SmokeDocker) -> None:
    code = "import json, sys; print(json.dumps({'version': sys.version_info[:2], 'sum': 5 + 6}))"
    out = docker("run", "--rm", BASE_IMAGE, "python3", "-c", code).stdout
    result = json.loads(out)
    assert result["sum"] == 11
    assert result["version"][0] == 3
    assert result["version"][1] >= 11
    # The image's default command is the interpreter, reading the program from stdin.
    assert docker("run", "--rm", "-i", BASE_IMAGE, stdin="print(6 * 7)\n").stdout.strip() == "42"
    assert "iproute2" in docker("run", "--rm", BASE_IMAGE, "ip", "-V").stdout
    assert docker("run", "--rm", BASE_IMAGE, "python", "-c", "print('alias')").stdout == "alias\n"


def test_network_without_host_address_is_closed_to_host_but_published_port_is_open(
    docker: SmokeDocker,
) -> None:
    front_net = docker.network("front", FRONT_SUBNET, internal=False, host_address=True)
    service_net = docker.network("services", SERVICE_SUBNET, internal=True, host_address=False)
    port = docker_client.free_port()
    front = docker.container(
        "front",
        front_net,
        "192.168.1.10",
        serve(docker.name("front")),
        publish=f"127.0.0.1:{port}:{SERVER_PORT}",
    )
    service = docker.container(
        "service", service_net, "192.168.2.10", serve(docker.name("service"))
    )
    docker.wait_serving(front)
    docker.wait_serving(service)

    # The published port is the one way in from the host.
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/id", timeout=PROBE_TIMEOUT) as reply:
        assert reply.read().decode().strip() == front

    # Control: the probe does reach a container whose bridge has a host address.
    front_bridge = docker.bridge(front_net)
    assert connect_via(front_bridge, "192.168.1.10", SERVER_PORT)

    service_bridge = docker.bridge(service_net)
    assert docker_client.host_ipv4_addresses(service_bridge) == []
    device = docker_client.host_route_device("192.168.2.10")
    assert device != service_bridge, "the host routes into the service subnet"
    assert not connect_via(service_bridge, "192.168.2.10", SERVER_PORT)


def test_ip_route_add_needs_net_admin(docker: SmokeDocker) -> None:
    front_net = docker.network("front", FRONT_SUBNET, internal=False, host_address=True)
    add_route = f"ip route add {SERVICE_SUBNET} via {ROUTER_FRONT_IP}"
    plain = docker(
        "run", "--rm", "--network", front_net, BASE_IMAGE, "sh", "-c", add_route, check=False
    )
    assert plain.returncode != 0
    assert "Operation not permitted" in plain.stderr

    show = f"{add_route} && ip route show {SERVICE_SUBNET}"
    admin = docker(
        "run",
        "--rm",
        "--cap-add",
        "NET_ADMIN",
        "--network",
        front_net,
        BASE_IMAGE,
        "sh",
        "-c",
        show,
    )
    assert f"{SERVICE_SUBNET} via {ROUTER_FRONT_IP}" in admin.stdout


@dataclass(frozen=True)
class RouterCase:
    """One way of wiring the client topology's inter-subnet router."""

    id: str
    internal: bool
    ip_forward: int
    # True: the router holds 192.168.2.254 itself (an address it adds, as Docker reserves the
    # network's gateway address), so services keep Docker's default route and need no
    # capability. False: Docker gives the router .254 and each service adds a return route.
    router_owns_gateway: bool
    expect_reachable: bool | None  # None: depends on bridge netfilter, decided at run time


def bridge_netfilter_on() -> bool:
    knob = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
    return knob.exists() and knob.read_text().strip() == "1"


ROUTER_CASES = [
    RouterCase("routes-on-services", False, 1, False, True),
    RouterCase("router-owns-gateway", False, 1, True, True),
    RouterCase("no-ip-forward", False, 0, False, False),
    # With bridge netfilter on, Docker's isolation rules for an internal network drop any
    # frame entering its bridge from an address outside the subnet, routed or not.
    RouterCase("internal-networks", True, 1, False, None),
]


@pytest.mark.parametrize("case", ROUTER_CASES, ids=[c.id for c in ROUTER_CASES])
def test_router_container_forwards_between_subnets(docker: SmokeDocker, case: RouterCase) -> None:
    service_gateway = ROUTER_SERVICE_IP if case.router_owns_gateway else None
    front_net = docker.network("front", FRONT_SUBNET, internal=case.internal, host_address=False)
    service_net = docker.network(
        "services",
        SERVICE_SUBNET,
        internal=case.internal,
        host_address=False,
        gateway=service_gateway,
    )
    service_name = docker.name("service")
    if case.router_owns_gateway:
        router_service_ip = str(ipaddress.ip_address(ROUTER_SERVICE_IP) - 1)
        router_cmd = f"ip addr add {ROUTER_SERVICE_IP}/24 dev eth1 && exec sleep infinity"
        service_cmd = serve(service_name)
        service_caps: tuple[str, ...] = ()
    else:
        router_service_ip = ROUTER_SERVICE_IP
        router_cmd = "exec sleep infinity"
        service_cmd = serve(
            service_name, before=f"ip route add {FRONT_SUBNET} via {ROUTER_SERVICE_IP}"
        )
        service_caps = ("NET_ADMIN",)

    docker.container(
        "router",
        front_net,
        ROUTER_FRONT_IP,
        router_cmd,
        caps=("NET_ADMIN",),
        sysctls=(f"net.ipv4.ip_forward={case.ip_forward}",),
        more_networks=((service_net, router_service_ip),),
    )
    service = docker.container(
        "service", service_net, "192.168.2.10", service_cmd, caps=service_caps
    )
    front = docker.container(
        "front",
        front_net,
        "192.168.1.10",
        f"ip route add {SERVICE_SUBNET} via {ROUTER_FRONT_IP} && exec sleep infinity",
        caps=("NET_ADMIN",),
    )
    docker.wait_serving(service)

    expected = case.expect_reachable
    if expected is None:
        expected = not bridge_netfilter_on()
    got = docker.fetch_inside(front, f"http://192.168.2.10:{SERVER_PORT}/id")
    assert (got == service) is expected, f"front end fetched {got!r}, expected reachable={expected}"
