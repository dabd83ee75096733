"""`lab diagram STACK`: the stack's topology as a picture, like Horizon's Network Topology view.

Drawn from the model (the stack file through `lab.topology.build_topology`), so it needs no
cloud, and, when the stack is deployed, completed with its outputs (the floating IP, the
fixed addresses as deployed, the calculator's URL). `diagram_source` is pure: a Topology and
optional outputs in, Graphviz source out; `render` hands that to Graphviz's `dot` for SVG and
PNG. The same input always gives the same bytes (fixed font, ordered nodes, no timestamps),
so committed pictures can be checked for staleness by regenerating them.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from lab.names import FRONT, physical_name
from labctl import check
from labctl.arguments import StackArg

# Graphviz and the model are imported where a picture is drawn: `lab --help` lists this
# command without them.
if TYPE_CHECKING:
    import graphviz

    from lab.config import LabConfig
    from lab.topology import Node, Router, Subnet, Topology

FORMATS = ("svg", "png")
# The README's pictures: file stem -> the example stack drawn (docs/diagrams/<stem>.svg, .png).
README_PICTURES = {"single": "alice", "client": "bob"}
DASH = "\u2009\u2013\u2009"  # a range in labels: thin space, en dash, thin space
FONT = "DejaVu Sans"  # in Debian's fonts-dejavu-core, which graphviz pulls in
# Horizon's palette, roughly: networks as coloured bars, routers and VMs as plain boxes.
SUBNET_COLOURS = ("#cfe2f3", "#d9ead3", "#fff2cc")
EXTERNAL_COLOUR = "#e0e0e0"
LINK_COLOUR = "#666666"
ALLOW_COLOUR = "#2e7d32"
LINKS_LEGEND = "grey lines: network links, labelled with the router's address on the subnet\\l"
ALLOW_LEGEND = {
    "openstack": "green arrows: the only traffic the security groups let in, and from where\\l",
    "docker": "green arrows: the only way in from this host (Docker has no security groups)\\l",
}


@dataclass(frozen=True)
class Deployed:
    """What a deployed stack's outputs add to the picture."""

    calculator_url: str | None
    floating_ips: Mapping[str, str]  # VM name -> floating address
    private_ips: Mapping[str, str]  # VM name -> fixed address

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> Deployed:
        return cls(
            calculator_url=outputs.get("calculatorUrl"),
            floating_ips=dict(outputs.get("floatingIps") or {}),
            private_ips=dict(outputs.get("privateIps") or {}),
        )


def _id(kind: str, key: str) -> str:
    return f"{kind}_{key}".replace("-", "_")


def _subnet_label(config: LabConfig, subnet: Subnet) -> str:
    if config.target == "docker":
        # Docker's mechanisms: a bridge network, routes each container adds at start.
        name = f"{subnet.key} subnet (a bridge network)"
        details = ["no DHCP: each container at its fixed address"]
        route_origin = "route added at start"
    else:
        pool_start, pool_end = subnet.dhcp_pool
        name = physical_name(config.student, subnet.key)
        details = [f"gateway {subnet.gateway_ip} · DHCP pool {pool_start}{DASH}{pool_end}"]
        route_origin = "host route (DHCP)"
    lines = [f"<B>{name}</B>   {subnet.cidr}", *details]
    lines += [f"{route_origin}: {r.destination} via {r.next_hop}" for r in subnet.host_routes]
    return "<" + "<BR/>".join(lines) + ">"


def _router_label(config: LabConfig, router: Router) -> str:
    if config.target == "docker":
        title = f"{router.key} router"
        role = "Docker's NAT plays it" if router.external else "a forwarding container"
    else:
        title = f"router {physical_name(config.student, router.key)}"
        role = "external gateway" if router.external else "no external gateway"
    lines = [f"<B>{title}</B>", role]
    lines += [f"extra route {r.destination} via {r.next_hop}" for r in router.routes]
    return "<" + "<BR/>".join(lines) + ">"


def _node_label(config: LabConfig, node: Node, deployed: Deployed | None) -> str:
    name = physical_name(config.student, node.role)
    fixed = (deployed.private_ips.get(name) if deployed else None) or str(node.ip)
    return f"<<B>{name}</B><BR/>{fixed} : {node.port}>"


def _public_label(config: LabConfig) -> str:
    if config.target == "docker":
        return "<<B>this host</B><BR/>(Docker NAT)>"
    return f"<<B>external network {config.external_network}</B><BR/>(the internet)>"


def _floating_label(config: LabConfig, front: Node, deployed: Deployed | None) -> str:
    name = physical_name(config.student, front.role)
    address = deployed.floating_ips.get(name) if deployed else None
    if config.target == "docker":
        host = address or str(config.docker_host_address)
        return f"<published port<BR/><B>{host}:{config.docker_host_port}</B>>"
    return f"<floating IP<BR/><B>{address or 'assigned by pulumi up'}</B>>"


def _front_admits(config: LabConfig, front: Node) -> str:
    if config.target == "docker":
        return f" TCP {front.port}: this host only\\l"
    allowed = f" TCP {front.port}, ping: anywhere\\l"
    if config.ssh_allowed_cidr is not None:
        allowed += f" SSH: {config.ssh_allowed_cidr}\\l"
    return allowed


def _services_admit(config: LabConfig, topology: Topology) -> str:
    first, last = topology.services[0].port, topology.services[-1].port
    if config.target == "docker":
        # No security groups on Docker: no published port and no host address on the
        # bridges keep the host out; containers of the lab reach each other.
        return f" ports {first}{DASH}{last}: not published,\\l only the lab's containers\\l"
    # The services' rules name the front end's security group, never a CIDR
    # (components/calculator_tier.py), so this is the one way in.
    ssh = ", SSH" if config.ssh_allowed_cidr is not None else ""
    group = physical_name(config.student, FRONT)
    return f" its port ({first}{DASH}{last}), ping{ssh}:\\l only from group {group}\\l"


def _title(config: LabConfig, topology: Topology, deployed: Deployed | None) -> str:
    target = "OpenStack" if config.target == "openstack" else "local Docker"
    title = f"{config.student}: {topology.name} topology on {target}"
    if deployed and deployed.calculator_url:
        title += f" · {deployed.calculator_url}"
    return f"{title}\\l"


def diagram_source(
    config: LabConfig, topology: Topology, deployed: Deployed | None = None
) -> graphviz.Digraph:
    """The topology as a Graphviz graph, drawn top-down from the external side.

    Each router hangs under the subnet it is reached from and above the next one, each VM
    under its subnet. The services share a dashed box, which the front end's one arrow
    enters: in both topologies they admit traffic from the front end's group only. Nodes
    are added in the topology's own order, so the source (and `dot`'s layout) is the same on
    every run.
    """
    import graphviz

    graph = graphviz.Digraph(
        name=f"{config.student}-{topology.name}",
        graph_attr={
            "label": _title(config, topology, deployed)
            + LINKS_LEGEND
            + ALLOW_LEGEND[config.target],
            "labelloc": "b",
            "labeljust": "l",
            "fontname": FONT,
            "fontsize": "11",
            "rankdir": "TB",
            "nodesep": "0.2",
            "ranksep": "0.4",
            "ordering": "out",
            "compound": "true",
            "bgcolor": "white",
            "pad": "0.15",
        },
        node_attr={
            "fontname": FONT,
            "fontsize": "11",
            "shape": "box",
            "style": "rounded",
            "margin": "0.08,0.04",
        },
        edge_attr={
            "fontname": FONT,
            "fontsize": "10",
            "color": LINK_COLOUR,
            "fontcolor": LINK_COLOUR,
            "arrowhead": "none",
        },
    )
    public = _id("public", "side")
    graph.node(public, _public_label(config), style="filled", fillcolor=EXTERNAL_COLOUR)

    for index, subnet in enumerate(topology.subnets):
        graph.node(
            _id("subnet", subnet.key),
            _subnet_label(config, subnet),
            style="filled",
            fillcolor=SUBNET_COLOURS[index % len(SUBNET_COLOURS)],
            color=LINK_COLOUR,
        )
    for router in topology.routers:
        router_id = _id("router", router.key)
        graph.node(router_id, _router_label(config, router), style="rounded,bold")
        interfaces = list(router.interfaces)
        if router.external:
            graph.edge(public, router_id, label=" external gateway")
        else:
            # Reached from its first subnet; links the ones after it, below.
            upstream = interfaces.pop(0)
            graph.edge(_id("subnet", upstream.subnet), router_id, label=f" {upstream.ip}")
        for interface in interfaces:
            # Docker's NAT reaches the front end over the public network, not at this address.
            nat = router.external and config.target == "docker"
            label = " through the public network" if nat else f" {interface.ip}"
            graph.edge(router_id, _id("subnet", interface.subnet), label=label)

    front = topology.front
    with graph.subgraph(name="cluster_services") as services:
        services.attr(label="", style="dashed,rounded", color=ALLOW_COLOUR)
        for node in topology.services:
            services.node(_id("vm", node.role), _node_label(config, node, deployed))
    graph.node(_id("vm", front.role), _node_label(config, front, deployed))
    graph.edge(_id("subnet", front.subnet), _id("vm", front.role))
    for node in topology.services:
        # On a shared subnet the services hang one row lower than the front end, so that its
        # arrow into their box runs down as in the other topology, not along a crowded row.
        graph.edge(
            _id("subnet", node.subnet),
            _id("vm", node.role),
            minlen="2" if node.subnet == front.subnet else "1",
        )

    floating = _id("floating", front.role)
    graph.node(floating, _floating_label(config, front, deployed), shape="ellipse")
    graph.edge(public, floating, style="dashed")
    allow = {"color": ALLOW_COLOUR, "fontcolor": ALLOW_COLOUR, "arrowhead": "normal"}
    graph.edge(
        floating, _id("vm", front.role), label=_front_admits(config, front), penwidth="1.6", **allow
    )
    graph.edge(
        _id("vm", front.role),
        _id("vm", topology.services[-1].role),  # clipped at the box, by lhead
        label=_services_admit(config, topology),
        lhead="cluster_services",
        constraint="false",
        penwidth="1.6",
        **allow,
    )
    return graph


def render(graph: graphviz.Digraph, directory: Path, stem: str) -> list[Path]:
    """Write `stem.svg` and `stem.png` into `directory` with Graphviz's `dot`."""
    if shutil.which("dot") is None:
        raise RuntimeError("Graphviz's `dot` is not installed (Debian: apt-get install graphviz)")
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in FORMATS:
        path = directory / f"{stem}.{fmt}"
        path.write_bytes(graph.pipe(format=fmt, engine="dot"))
        written.append(path)
    return written


def stack_outputs(stack: str) -> Mapping[str, Any] | None:
    """The outputs of a deployed stack (read as `lab check` reads them); None when there is
    nothing to read: no CLI, no deployment, or no outputs."""
    try:
        outputs = check.stack_outputs(stack)
    except check.OutputsError:
        return None
    return outputs or None


def build(stack: str, outputs: Mapping[str, Any] | None) -> graphviz.Digraph:
    from lab.topology import build_topology
    from labctl.stacks import load

    config = load(stack)  # LabError naming the file or key, printed by the `lab` command
    deployed = Deployed.from_outputs(outputs) if outputs else None
    return diagram_source(config, build_topology(config), deployed)


def diagram(
    stack: StackArg,
    out: Annotated[Path, typer.Option(help="Directory to write the pictures into.")] = Path(),
    name: Annotated[
        str | None, typer.Option(help="File name without extension (default: the stack).")
    ] = None,
    outputs: Annotated[
        bool,
        typer.Option(
            "--outputs/--no-outputs",
            help="Add the deployed stack's outputs (floating IP, URL), when it is deployed.",
        ),
    ] = True,
    outputs_file: Annotated[
        Path | None,
        typer.Option(help="Read the outputs from this `pulumi stack output --json` file."),
    ] = None,
) -> None:
    """Draw the stack's topology (networks, routers, VMs, addresses, security groups) as SVG
    and PNG."""
    values: Mapping[str, Any] | None = None
    if outputs_file is not None:
        values = json.loads(outputs_file.read_text())
    elif outputs:
        values = stack_outputs(stack)
    for path in render(build(stack, values), out, name or stack):
        typer.echo(path)
    if outputs and outputs_file is None and values is None:
        typer.echo("(not deployed, or no pulumi here: drawn from the stack file alone)", err=True)
