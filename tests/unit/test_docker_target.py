"""The Docker resource graph of both topologies, under Pulumi mocks.

Each fixture runs the whole program (`__main__.py`) with `target: docker`; the tests check that
the containers are another rendering of the same Topology as the OpenStack VMs: the same
subnets and fixed addresses, the inter-subnet router at the handout's addresses, a single way
in (the front end's published port), and the same stack outputs.
"""

from __future__ import annotations

import shlex
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import pytest

from lab.cloud_init import APP_DIR, app_files
from lab.config import LabConfig
from lab.docker_plan import (
    UNPRIVILEGED,
    build_context,
    container_routes,
    docker_gateway,
    environment_list,
    image_name,
    image_tag,
    node_command,
)
from lab.topology import HostRoute, build_topology
from tests.unit.program import Program, run

SERVICES = {"sum": ("192.168.2.11", 50001), "sub": ("192.168.2.12", 50002)} | {
    "mul": ("192.168.2.13", 50003),
    "div": ("192.168.2.14", 50004),
}
ROUTED_CAPS = ["NET_ADMIN", "SETGID", "SETPCAP", "SETUID"]


@pytest.fixture(scope="module")
def client() -> Program:
    return run({"target": "docker", "topology": "client"}, stack="alice")


@pytest.fixture(scope="module")
def single() -> Program:
    return run(
        {
            "target": "docker",
            "topology": "single",
            "student": "bob",
            "dockerBaseImage": "calculator-lab/base:bookworm",
            "dockerHostAddress": "0.0.0.0",
            "dockerHostPort": 50100,
        },
        stack="dev-single",
    )


def containers(program: Program) -> dict[str, dict[str, Any]]:
    return {c.inputs["name"]: c.inputs for c in program.of_type(":Container")}


def networks(program: Program) -> dict[str, dict[str, Any]]:
    return {n.inputs["name"]: n.inputs for n in program.of_type(":Network")}


def attachments(container: dict[str, Any]) -> dict[str, str | None]:
    """Network name -> fixed address (None: Docker picks one)."""
    return {n["name"]: n.get("ipv4Address") for n in container["networksAdvanced"]}


def shell_steps(container: dict[str, Any]) -> list[str]:
    command = container["command"]
    assert command[:2] == ["sh", "-ec"]
    return [step.strip() for step in command[2].split("&&")]


# --- networks ----------------------------------------------------------------------------------


def test_client_subnets_become_routed_bridges_with_the_lab_cidrs(client: Program) -> None:
    nets = networks(client)
    assert set(nets) == {"alice-subnet-client", "alice-subnet-service", "alice-public"}
    for name, cidr in (
        ("alice-subnet-client", "192.168.1.0/24"),
        ("alice-subnet-service", "192.168.2.0/24"),
    ):
        net = nets[name]
        assert net["ipamConfigs"] == [{"subnet": cidr, "gateway": cidr.replace("0/24", "1")}]
        assert net["driver"] == "bridge"
        # The router container forwards through both, and Docker's isolation rules for an
        # internal network would drop those packets; no host address and no NAT close them.
        assert net["internal"] is False
        assert net["options"] == {
            "com.docker.network.bridge.inhibit_ipv4": "true",
            "com.docker.network.bridge.enable_ip_masquerade": "false",
        }


def test_public_network_sorts_first_so_it_carries_the_default_route(client: Program) -> None:
    # Docker breaks the tie between non-internal networks by name.
    assert min(networks(client)) == "alice-public"


def test_public_network_is_the_only_open_one_and_docker_picks_its_subnet(
    client: Program,
) -> None:
    public = networks(client)["alice-public"]
    assert not public.get("internal")
    assert "ipamConfigs" not in public
    assert "options" not in public


def test_single_topology_has_one_internal_network_and_the_public_one(single: Program) -> None:
    nets = networks(single)
    assert set(nets) == {"bob-subnet-private", "bob-public"}
    private = nets["bob-subnet-private"]
    assert private["ipamConfigs"] == [{"subnet": "10.0.2.0/24", "gateway": "10.0.2.1"}]
    # Nothing is routed there, so Docker's "internal" (no way out at all) applies as well.
    assert private["internal"] is True
    assert private["options"] == {"com.docker.network.bridge.inhibit_ipv4": "true"}


# --- containers and addresses ------------------------------------------------------------------


def test_client_nodes_sit_at_the_topology_addresses(client: Program) -> None:
    found = containers(client)
    assert attachments(found["alice-front"]) == {
        "alice-subnet-client": "192.168.1.10",
        "alice-public": None,
    }
    for role, (ip, _) in SERVICES.items():
        assert attachments(found[f"alice-{role}"]) == {"alice-subnet-service": ip}


def test_client_router_container_has_the_handout_interfaces(client: Program) -> None:
    router = containers(client)["alice-inter-router"]
    assert attachments(router) == {
        "alice-subnet-client": "192.168.1.253",
        "alice-subnet-service": "192.168.2.254",
    }
    assert router["sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert "ports" not in router
    assert router["user"] == UNPRIVILEGED
    assert router["capabilities"] == {"drops": ["ALL"]}


def test_gateway_router_is_not_a_container(client: Program, single: Program) -> None:
    # Docker's NAT on the public network plays it; only routers between subnets are drawn.
    assert [name for name in containers(client) if "router" in name] == ["alice-inter-router"]
    assert not [name for name in containers(single) if "router" in name]


def test_single_topology_runs_five_nodes_on_one_network(single: Program) -> None:
    found = containers(single)
    assert set(found) == {"bob-front", "bob-sum", "bob-sub", "bob-mul", "bob-div"}
    assert attachments(found["bob-front"]) == {
        "bob-subnet-private": "10.0.2.10",
        "bob-public": None,
    }
    for index, role in enumerate(SERVICES, start=11):
        assert attachments(found[f"bob-{role}"]) == {"bob-subnet-private": f"10.0.2.{index}"}


def test_only_the_front_end_publishes_a_port(client: Program, single: Program) -> None:
    for program, student, address, port in (
        (client, "alice", "127.0.0.1", 50000),
        (single, "bob", "0.0.0.0", 50100),
    ):
        published = {name: c["ports"] for name, c in containers(program).items() if "ports" in c}
        assert published == {
            f"{student}-front": [
                {"internal": 50000, "external": port, "ip": address, "protocol": "tcp"}
            ]
        }


# --- what runs inside ---------------------------------------------------------------------------


def test_client_front_end_routes_to_the_services_through_the_inter_router(
    client: Program,
) -> None:
    front = containers(client)["alice-front"]
    steps = shell_steps(front)
    assert steps[0] == "ip route replace 192.168.2.0/24 via 192.168.1.253"
    assert shlex.split(steps[-1])[0] == "exec"
    assert shlex.split(steps[-1])[-4:] == ["python3", "-m", "calculator", "front"]


@pytest.mark.parametrize("role", SERVICES)
def test_client_services_route_back_through_their_gateway(client: Program, role: str) -> None:
    steps = shell_steps(containers(client)[f"alice-{role}"])
    assert steps[:-1] == ["ip route replace 192.168.1.0/24 via 192.168.2.254"]
    assert shlex.split(steps[-1])[-4:] == ["python3", "-m", "calculator", role]


@pytest.mark.parametrize("role", ["front", *SERVICES])
def test_routed_nodes_drop_root_and_every_capability_before_python(
    client: Program, role: str
) -> None:
    container = containers(client)[f"alice-{role}"]
    assert container["user"] == "0:0"
    assert container["capabilities"] == {"drops": ["ALL"], "adds": ROUTED_CAPS}
    assert "no-new-privileges:true" in container["securityOpts"]
    exec_step = shlex.split(shell_steps(container)[-1])
    assert exec_step[:2] == ["exec", "setpriv"]
    assert {"--reuid=65534", "--regid=65534", "--clear-groups"} <= set(exec_step)
    assert {"--inh-caps=-all", "--bounding-set=-all"} <= set(exec_step)


def test_single_topology_needs_no_route_and_no_capability(single: Program) -> None:
    for name, container in containers(single).items():
        role = name.removeprefix("bob-")
        assert container["command"] == ["python3", "-m", "calculator", role]
        assert container["user"] == UNPRIVILEGED
        assert container["capabilities"] == {"drops": ["ALL"]}
        assert "sysctls" not in container


def test_front_end_environment_points_at_the_services(client: Program) -> None:
    found = containers(client)
    front_env = dict(line.split("=", 1) for line in found["alice-front"]["envs"])
    assert front_env["CALC_PORT"] == "50000"
    assert front_env["CALC_LISTEN_HOST"] == "0.0.0.0"
    for role, (ip, port) in SERVICES.items():
        assert front_env[f"CALC_{role.upper()}_URL"] == f"http://{ip}:{port}"
    div_env = dict(line.split("=", 1) for line in found["alice-div"]["envs"])
    assert div_env == {"CALC_LISTEN_HOST": "0.0.0.0", "CALC_PORT": "50004"}


def test_every_container_has_a_python_healthcheck_and_is_waited_for(client: Program) -> None:
    for name, container in containers(client).items():
        test = container["healthcheck"]["tests"]
        assert test[:3] == ["CMD", "python3", "-c"], name
        assert container["wait"] is True
        if name != "alice-inter-router":
            port = 50000 if name == "alice-front" else SERVICES[name.removeprefix("alice-")][1]
            assert test[-1] == str(port)
            assert "/health" in test[3]


def test_containers_are_hardened(client: Program) -> None:
    for name, container in containers(client).items():
        assert container["readOnly"] is True, name
        assert container["init"] is True, name
        assert "privileged" not in container


# --- image -------------------------------------------------------------------------------------


def test_image_is_built_from_the_calculator_recipe_with_the_configured_base(
    client: Program, single: Program
) -> None:
    (image,) = client.of_type(":RemoteImage")
    build = image.inputs["build"]
    assert build["context"] == "apps/calculator"
    assert build["dockerfile"] == "Dockerfile"
    assert build["buildArgs"] == {"BASE_IMAGE": "python:3.12-slim"}
    # Only RemoteImage with keep_locally=False removes the image on destroy.
    assert image.inputs["keepLocally"] is False
    assert image.inputs["name"].startswith("calculator-lab/calculator-alice:")
    (single_image,) = single.of_type(":RemoteImage")
    assert single_image.inputs["build"]["buildArgs"] == {
        "BASE_IMAGE": "calculator-lab/base:bookworm"
    }
    assert single_image.inputs["name"].startswith("calculator-lab/calculator-bob:")


def test_no_docker_image_resource_that_would_outlive_destroy(client: Program) -> None:
    assert not client.of_type(":Image")


def test_image_tag_follows_content_recipe_and_base() -> None:
    files = app_files()
    recipe = {"Dockerfile": b"FROM x\n", ".dockerignore": b"README.md\n"}
    tag = image_tag(files, recipe, "python:3.12-slim")
    assert tag == image_tag(files, dict(recipe), "python:3.12-slim")
    assert tag != image_tag(files, recipe, "calculator-lab/base:bookworm")
    assert tag != image_tag(files, {**recipe, "Dockerfile": b"FROM y\n"}, "python:3.12-slim")
    assert tag != image_tag(files[1:], recipe, "python:3.12-slim")
    assert image_name("alice", tag) == f"calculator-lab/calculator-alice:{tag}"


def test_build_context_is_relative_inside_the_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    app = project / "apps" / "calculator"
    app.mkdir(parents=True)
    assert build_context(app, project) == "apps/calculator"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert build_context(app, elsewhere) == str(app.resolve())


def test_dockerignore_keeps_the_image_to_the_files_cloud_init_ships() -> None:
    ignore = (APP_DIR / ".dockerignore").read_text()
    patterns = {line for line in ignore.splitlines() if line and not line.startswith("#")}
    assert {"README.md", "Dockerfile", ".dockerignore", "**/__pycache__"} <= patterns


# --- outputs and naming ------------------------------------------------------------------------


def test_client_outputs_match_the_openstack_shape(client: Program) -> None:
    assert client.outputs["calculatorUrl"] == "http://127.0.0.1:50000"
    assert client.outputs["frontendFloatingIp"] == "127.0.0.1"
    assert client.outputs["floatingIps"] == {"alice-front": "127.0.0.1"}
    assert client.outputs["privateIps"] == {
        "alice-front": "192.168.1.10",
        **{f"alice-{role}": ip for role, (ip, _) in SERVICES.items()},
    }
    assert client.outputs["topology"] == "client"
    assert client.outputs["target"] == "docker"


def test_single_outputs(single: Program) -> None:
    # Published on every address (dockerHostAddress=0.0.0.0), reached through loopback.
    assert single.outputs["calculatorUrl"] == "http://127.0.0.1:50100"
    assert single.outputs["frontendFloatingIp"] == "0.0.0.0"
    assert single.outputs["privateIps"]["bob-div"] == "10.0.2.14"


def test_every_docker_name_carries_the_student(client: Program) -> None:
    named = [r for r in client.resources if r.custom]
    assert len(named) == 10  # image, 3 networks, router, 5 nodes
    for resource in named:
        assert "alice" in resource.inputs["name"], resource.name


def test_every_resource_is_parented_to_a_docker_component(client: Program) -> None:
    components = {r.name: r.type for r in client.resources if r.type.startswith("calculator-lab:")}
    assert set(components.values()) == {
        "calculator-lab:components:CalculatorImage",
        "calculator-lab:components:LabNetworks",
        "calculator-lab:components:CalculatorContainers",
    }
    for resource in client.resources:
        if resource.custom:
            assert "calculator-lab:components:" in resource.parent, resource.name


def test_labels_name_student_and_role(client: Program) -> None:
    for name, container in containers(client).items():
        labels = {item["label"]: item["value"] for item in container["labels"]}
        assert labels["calculator-lab.student"] == "alice"
        assert labels["calculator-lab.role"] == name.removeprefix("alice-")


# --- pure helpers ------------------------------------------------------------------------------


def _routes(config: dict[str, Any], subnet: str) -> list[tuple[str, str]]:
    topology = build_topology(LabConfig.model_validate(config))
    return [(str(r.destination), str(r.next_hop)) for r in container_routes(topology, subnet)]


def test_routes_follow_the_configured_addresses() -> None:
    config = {
        "topology": "client",
        "clientCidr": "10.1.0.0/16",
        "serviceCidr": "10.2.0.0/24",
        "interRouterClientIp": "10.1.0.1",
        "interRouterServiceIp": "10.2.0.1",
    }
    assert _routes(config, "client") == [("10.2.0.0/24", "10.1.0.1")]
    assert _routes(config, "service") == [("10.1.0.0/16", "10.2.0.1")]
    assert _routes({"topology": "single"}, "private") == []


def test_docker_gateway_avoids_every_topology_address() -> None:
    config = LabConfig.model_validate(
        {
            "topology": "client",
            "interRouterClientIp": "192.168.1.1",
            "gatewayRouterIp": "192.168.1.2",
            "interRouterServiceIp": "192.168.2.254",
        }
    )
    topology = build_topology(config)
    assert str(docker_gateway(topology, "client")) == "192.168.1.3"
    assert str(docker_gateway(topology, "service")) == "192.168.2.1"


def test_node_command_quotes_and_orders_its_steps() -> None:
    route = HostRoute(IPv4Network("192.168.2.0/24"), IPv4Address("192.168.1.253"))
    command = node_command("front", [route, route])
    steps = command[2].split(" && ")
    assert steps[:2] == ["ip route replace 192.168.2.0/24 via 192.168.1.253"] * 2
    assert steps[2].startswith("exec setpriv ")
    assert node_command("sum", []) == ["python3", "-m", "calculator", "sum"]


def test_environment_list_is_sorted() -> None:
    assert environment_list({"B": "2", "A": "1"}) == ["A=1", "B=2"]


def test_a_port_published_on_every_address_is_reached_through_loopback() -> None:
    from targets.docker import reachable_host

    assert reachable_host("0.0.0.0") == "127.0.0.1"
    assert reachable_host("192.0.2.7") == "192.0.2.7"
