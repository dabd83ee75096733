"""`lab diagram`: the pictures hold the model's addresses and rules, and the README's are current.

The expected addresses come from the model (`build_topology`), never from the diagram code, and
are looked for in the text of the SVG that Graphviz's `dot` renders, as a reader would see it.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lab.config import LabConfig
from lab.names import physical_name
from lab.topology import Topology, build_topology
from labctl.diagram import (
    ALLOW_COLOUR,
    README_PICTURES,
    Deployed,
    build,
    diagram_source,
)
from labctl.stackfiles import read_config
from tests.helpers import require_tool

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs" / "diagrams"
SVG = "{http://www.w3.org/2000/svg}"
# README width: a picture much wider than this is shrunk until its text is hard to read.
README_WIDTH_BUDGET_PX = 900


@pytest.fixture(autouse=True)
def _dot() -> None:
    require_tool("dot", "Debian package graphviz")


def _svg(graph: object) -> bytes:
    return graph.pipe(format="svg", engine="dot")  # type: ignore[attr-defined, no-any-return]


def _texts(svg: bytes) -> str:
    """Every text a reader sees in the picture, one line per SVG text element."""
    root = ET.fromstring(svg)  # noqa: S314 (our own dot output)
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG}text"))


def _edges(svg: bytes) -> dict[str, ET.Element]:
    """Graphviz's edges by title ("tail->head")."""
    root = ET.fromstring(svg)  # noqa: S314 (our own dot output)
    return {
        "".join(g.find(f"{SVG}title").itertext()): g  # type: ignore[union-attr]
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "edge"
    }


def _words(text: str) -> set[str]:
    return set(re.split(r"[\s,():]+", text))


def _model(stack: str) -> tuple[LabConfig, Topology]:
    config = read_config(REPO / f"Pulumi.{stack}.yaml", stack)
    return config, build_topology(config)


@pytest.mark.parametrize("stack", ["alice", "bob", "dev", "dev-single"])
def test_picture_holds_every_address_of_the_model(stack: str) -> None:
    config, topology = _model(stack)
    words = _words(_texts(_svg(diagram_source(config, topology))))
    expected = {str(subnet.cidr) for subnet in topology.subnets}
    # On Docker the gateway router is the engine's NAT on the public network: it holds no
    # address on a lab subnet, and the picture must not pretend it does.
    nat = config.target == "docker"
    expected |= {
        str(i.ip)
        for router in topology.routers
        if not (router.external and nat)
        for i in router.interfaces
    }
    for subnet in topology.subnets:
        for route in subnet.host_routes:
            expected |= {str(route.destination), str(route.next_hop)}
    for node in topology.nodes:
        expected |= {str(node.ip), str(node.port), physical_name(config.student, node.role)}
    for router in topology.routers:
        for route in router.routes:
            expected |= {str(route.destination), str(route.next_hop)}
    assert expected <= words, f"missing from the picture: {sorted(expected - words)}"
    if nat:
        gateway = next(router for router in topology.routers if router.external)
        assert not {str(i.ip) for i in gateway.interfaces} & words - expected


@pytest.mark.parametrize("stack", ["alice", "bob"])
def test_openstack_picture_shows_dhcp_pools_and_router_names(stack: str) -> None:
    config, topology = _model(stack)
    words = _words(_texts(_svg(diagram_source(config, topology))))
    for subnet in topology.subnets:
        assert {str(ip) for ip in subnet.dhcp_pool} <= words
        assert physical_name(config.student, subnet.key) in words
    for router in topology.routers:
        assert physical_name(config.student, router.key) in words


def test_deployed_outputs_appear_and_win_over_the_model() -> None:
    config, topology = _model("bob")
    outputs = {
        "calculatorUrl": "http://172.24.4.57:50000",
        "floatingIps": {"bob-front": "172.24.4.57"},
        # Not what the model says: the picture must show what is deployed.
        "privateIps": {"bob-front": "192.168.1.99"},
    }
    deployed = Deployed.from_outputs(outputs)
    text = _texts(_svg(diagram_source(config, topology, deployed)))
    assert "172.24.4.57" in _words(text)
    assert "http://172.24.4.57:50000" in text
    assert "192.168.1.99" in _words(text)
    assert "assigned by pulumi up" not in text
    undeployed = _texts(_svg(diagram_source(config, topology)))
    assert "assigned by pulumi up" in undeployed
    assert "172.24.4.57" not in undeployed


@pytest.mark.parametrize("stack", ["alice", "bob"])
def test_security_groups_are_the_green_arrows(stack: str) -> None:
    """Anywhere -> floating IP -> front end on its port; front end -> the services' box only."""
    config, topology = _model(stack)
    svg = _svg(diagram_source(config, topology))
    green = {
        title: "".join(edge.itertext())
        for title, edge in _edges(svg).items()
        if any(p.get("stroke") == ALLOW_COLOUR for p in edge.iter(f"{SVG}path"))
    }
    assert set(green) == {"floating_front->vm_front", "vm_front->vm_div"}, green
    front_rule = green["floating_front->vm_front"]
    assert f"TCP {topology.front.port}" in front_rule
    assert "anywhere" in front_rule
    if config.ssh_allowed_cidr is not None:
        assert f"SSH: {config.ssh_allowed_cidr}" in front_rule
    else:
        assert "SSH" not in "".join(green.values())  # closed: no rule, no arrow text
    services_rule = green["vm_front->vm_div"]
    assert f"only from group {physical_name(config.student, 'front')}" in services_rule
    ports = [node.port for node in topology.services]
    assert f"{min(ports)}" in services_rule
    assert f"{max(ports)}" in services_rule
    # The arrow ends at the services' box (lhead), which holds every service and only them.
    root = ET.fromstring(svg)  # noqa: S314 (our own dot output)
    cluster = next(g for g in root.iter(f"{SVG}g") if g.get("id", "").startswith("clust"))
    box = _bounds(cluster)
    nodes = {
        "".join(g.find(f"{SVG}title").itertext()): _bounds(g)  # type: ignore[union-attr]
        for g in root.iter(f"{SVG}g")
        if g.get("class") == "node"
    }
    inside = {name for name, bounds in nodes.items() if _within(bounds, box)}
    assert inside == {f"vm_{node.role}" for node in topology.services}


def _bounds(group: ET.Element) -> tuple[float, float, float, float]:
    """The box around a node's or cluster's outline: polygon points, path, or ellipse."""
    points: list[tuple[float, float]] = []
    for shape in group:
        coordinates = shape.get("points") or shape.get("d") or ""
        points += [
            (float(x), float(y)) for x, y in re.findall(r"(-?[\d.]+),(-?[\d.]+)", coordinates)
        ]
        if shape.tag == f"{SVG}ellipse":
            cx, cy, rx, ry = (float(shape.get(k, "0")) for k in ("cx", "cy", "rx", "ry"))
            points += [(cx - rx, cy - ry), (cx + rx, cy + ry)]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _within(inner: tuple[float, ...], outer: tuple[float, ...]) -> bool:
    return (
        inner[0] >= outer[0]
        and inner[1] >= outer[1]
        and inner[2] <= outer[2]
        and inner[3] <= outer[3]
    )


def test_same_input_same_bytes() -> None:
    config, topology = _model("bob")
    first = diagram_source(config, topology)
    second = diagram_source(config, topology)
    assert first.source == second.source
    assert _svg(first) == _svg(second)


@pytest.mark.parametrize(("picture", "stack"), sorted(README_PICTURES.items()))
def test_readme_pictures_are_current(picture: str, stack: str) -> None:
    committed = (DOCS / f"{picture}.svg").read_bytes()
    fresh = _svg(build(stack, None))
    version = re.search(rb"Generated by graphviz version ([^\n]*)", committed)
    mine = re.search(rb"Generated by graphviz version ([^\n]*)", fresh)
    assert version
    assert mine
    assert version.group(1) == mine.group(1), (
        f"docs/diagrams/{picture}.svg was drawn by graphviz {version.group(1)!r}, this machine "
        f"has {mine.group(1)!r}: regenerate with `make diagrams` on the CI image (Debian 12)"
    )
    assert fresh == committed, (
        f"docs/diagrams/{picture}.svg is stale (Pulumi.{stack}.yaml, the model or the drawing "
        "changed): run `make diagrams` and commit docs/diagrams/"
    )
    png = (DOCS / f"{picture}.png").read_bytes()
    assert png == build(stack, None).pipe(format="png", engine="dot"), (
        f"docs/diagrams/{picture}.png is stale: run `make diagrams` and commit docs/diagrams/"
    )
    width, _height = struct.unpack(">II", png[16:24])
    assert width <= README_WIDTH_BUDGET_PX, f"{picture}.png is {width} px wide"
