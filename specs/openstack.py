"""OpenStack specs: a private network, a router, a VM with the rules of its security group.

Every value is worked out (names, addresses, user data, rules); what only exists once Pulumi
has created something (network and subnet ids, the external network's id) is handed to the
components beside the spec, by subnet key.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Route:
    destination: str  # CIDR
    next_hop: str


@dataclass(frozen=True)
class NetworkSpec:
    """A tenant network with one IPv4 subnet (PrivateNetwork)."""

    key: str  # the topology's subnet key; names the component and what refers to it
    physical_name: str  # carries the student id, so a class shares one project
    cidr: str
    gateway_ip: str  # the address the subnet's router interface takes
    dhcp_pool: tuple[str, str]  # first and last dynamic address
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[Route, ...] = ()  # pushed to the VMs by DHCP (option 121)
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RouterInterfaceSpec:
    subnet: str  # a NetworkSpec's key
    ip_address: str


@dataclass(frozen=True)
class RouterSpec:
    """A Neutron router with interfaces at fixed addresses (GatewayRouter)."""

    key: str
    physical_name: str
    # Attached to the external network; False: an internal router with no way out, like the
    # lab's inter-subnet router.
    external: bool
    interfaces: tuple[RouterInterfaceSpec, ...]
    routes: tuple[Route, ...] = ()
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class IngressRule:
    """TCP to `port`, or ICMP echo when `port` is None, from a CIDR or from the members of
    another VM's security group (by that VM's key), never both."""

    key: str  # unique in the stack: names the rule's resource
    port: int | None
    from_cidr: str | None = None
    from_vm: str | None = None

    def __post_init__(self) -> None:
        if (self.from_cidr is None) == (self.from_vm is None):
            raise ValueError(f"rule {self.key}: give exactly one of from_cidr and from_vm")


@dataclass(frozen=True)
class VmSpec:
    """A server on a port of its own, behind a security group of its own (CalculatorTier)."""

    key: str  # the role: names the VM's child resources and what rules refer to
    physical_name: str  # of the server, its port and its security group
    description: str  # of its security group
    subnet: str  # a NetworkSpec's key
    fixed_ip: str
    image_name: str
    flavor_name: str
    user_data: str
    ingress: tuple[IngressRule, ...]
    tags: tuple[str, ...] = ()
    # A new value replaces the server (lab/replacement.py); None when the cloud was not read
    # (an offline preview, Pulumi's mocks): nothing is then replaced for its state.
    replacement_trigger: str | None = None
