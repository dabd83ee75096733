"""The stack configuration: one pydantic model, validated once, before any resource exists.

Every field's alias is the key exactly as a student types it with `pulumi config set` (the
field name in camelCase, from pydantic's alias generator), so error messages can name it.
`load_config` is the only entry; everything downstream receives a `LabConfig`. Problems that
involve several keys are pydantic errors like any other, located at the key to change.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import InitErrorDetails, PydanticCustomError

from lab.names import FIRST_NODE_HOST, PROJECT, ROLES, SERVICE_ROLES, Role, config_key

Target = Literal["openstack", "docker"]
TopologyName = Literal["single", "client"]

__all__ = [
    "PROJECT",
    "ROLES",
    "SERVICE_ROLES",
    "ConfigError",
    "LabConfig",
    "Role",
    "RouterAddresses",
    "decode_value",
    "load_config",
]


class ConfigError(ValueError):
    """Raised with every configuration problem at once, each naming its key."""


def _network(value: object) -> IPv4Network:
    # strict=True rejects "10.0.2.5/24": a CIDR with host bits set is almost always a typo
    # for the network itself, and silently masking it hides the mistake.
    if not isinstance(value, str):
        raise ValueError("expected a CIDR such as 192.168.1.0/24")
    try:
        network = ipaddress.ip_network(value.strip(), strict=True)
    except ValueError as err:
        raise ValueError(f"'{value}' is not a CIDR network ({err})") from None
    if not isinstance(network, IPv4Network):
        raise ValueError(f"'{value}' is IPv6; the lab's networks are IPv4")
    return network


def _lab_subnet(network: IPv4Network) -> IPv4Network:
    # The VMs take hosts .10 to .14 and the routers the top of the range: a /27 is the
    # smallest subnet where neither collides with the other nor with DHCP's pool.
    if network.prefixlen > 27:
        raise ValueError(f"{network} is too small: use a /27 or larger (the lab uses /24)")
    return network


CidrNetwork = Annotated[IPv4Network, AfterValidator(_lab_subnet)]


@dataclass(frozen=True)
class RouterAddresses:
    """Where the routers sit: configured, or the lab's defaults at the top of each subnet."""

    gateway: IPv4Address
    inter_client: IPv4Address | None = None  # client topology only
    inter_service: IPv4Address | None = None


class LabConfig(BaseModel):
    """Everything the program needs to know, as typed values."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, alias_generator=to_camel
    )

    target: Target = Field(
        "docker", description="Where to deploy: local Docker engine or an OpenStack project."
    )
    topology: TopologyName = Field("single", description="'single' network or two-subnet 'client'.")
    student: str = Field(
        "", description="Student id put in every physical name; defaults to the stack name."
    )

    # OpenStack placement.
    external_network: str | None = None
    # Optional: with the id given, no look-up by name is needed, so preview works offline.
    external_network_id: str | None = None
    image: str | None = None
    flavor: str | None = None
    image_by_role: dict[Role, str] = Field(default_factory=dict)
    flavor_by_role: dict[Role, str] = Field(default_factory=dict)
    key_pair: str | None = None
    ssh_public_key: str | None = None
    ssh_allowed_cidr: IPv4Network | None = None
    ssh_user: str = "debian"
    dns_nameservers: list[IPv4Address] = Field(default_factory=list)
    python_path: str = "/usr/bin/python3"

    # Addressing. Defaults: the student report's working single network, the handout's subnets.
    network_cidr: CidrNetwork = IPv4Network("10.0.2.0/24")
    client_cidr: CidrNetwork = IPv4Network("192.168.1.0/24")
    service_cidr: CidrNetwork = IPv4Network("192.168.2.0/24")
    gateway_router_ip: IPv4Address | None = None
    inter_router_client_ip: IPv4Address | None = None
    inter_router_service_ip: IPv4Address | None = None

    # Docker.
    docker_base_image: str = "python:3.12-slim"
    docker_host_port: int = Field(50000, ge=1, le=65535)
    docker_host_address: IPv4Address = IPv4Address("127.0.0.1")

    @field_validator(
        "external_network",
        "external_network_id",
        "image",
        "flavor",
        "key_pair",
        "ssh_public_key",
        "gateway_router_ip",
        "inter_router_client_ip",
        "inter_router_service_ip",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # Pulumi.yaml declares optional keys with default "", so "" must mean "not set".
        return None if value == "" else value

    @field_validator("ssh_allowed_cidr", mode="before")
    @classmethod
    def _ssh_cidr_is_network(cls, value: object) -> object:
        return None if value in (None, "") else _network(value)

    @field_validator("network_cidr", "client_cidr", "service_cidr", mode="before")
    @classmethod
    def _cidr_is_network(cls, value: object) -> IPv4Network:
        return _network(value)

    @field_validator("student")
    @classmethod
    def _student_is_a_name(cls, value: str) -> str:
        # The id ends up in OpenStack names, Docker container names and DNS-ish labels.
        if value and not re.fullmatch(r"[a-z][a-z0-9-]{0,23}", value):
            raise ValueError(
                f"'{value}' must start with a lowercase letter and hold only a-z, 0-9 and '-'"
                " (24 characters at most); it defaults to the stack name, so set one, e.g."
                " pulumi config set student alice"
            )
        return value

    @field_validator("ssh_public_key")
    @classmethod
    def _looks_like_a_public_key(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"(ssh-(ed25519|rsa)|ecdsa-sha2-\S+) \S+", value):
            raise ValueError("expected an OpenSSH public key line, e.g. 'ssh-ed25519 AAAA... me'")
        return value

    @model_validator(mode="wrap")
    @classmethod
    def _consistent(cls, data: Any, handler: ModelWrapValidatorHandler[LabConfig]) -> LabConfig:
        # After the fields are valid one by one: the problems that involve several keys, each
        # located at the key a student changes to fix it.
        config = handler(data)
        problems = [
            InitErrorDetails(
                type=PydanticCustomError("lab_config", message),
                loc=(key,),
                input=getattr(config, _field_of(key)),
            )
            for key, message in config._cross_field_problems()
        ]
        if problems:
            raise ValidationError.from_exception_data(cls.__name__, problems)
        return config

    def _cross_field_problems(self) -> list[tuple[str, str]]:
        problems: list[tuple[str, str]] = []
        if self.target == "openstack":
            for key, value in (
                ("externalNetwork", self.external_network),
                ("image", self.image),
                ("flavor", self.flavor),
            ):
                if not value:
                    problems.append((key, "is required when target is openstack"))
        if self.key_pair and self.ssh_public_key:
            problems.append(("sshPublicKey", "set either keyPair or sshPublicKey, not both"))
        if self.ssh_allowed_cidr is not None and not (self.key_pair or self.ssh_public_key):
            problems.append(
                ("sshAllowedCidr", "opens SSH, but no key is set: set keyPair or sshPublicKey")
            )
        if self.topology == "client" and self.client_cidr.overlaps(self.service_cidr):
            problems.append(
                ("serviceCidr", f"{self.service_cidr} overlaps clientCidr {self.client_cidr}")
            )
        routers = self._router_placements()
        for key, (address, network) in routers.items():
            if message := _usable_address_problem(address, network):
                problems.append((key, message))
        if (
            self.topology == "client"
            and routers["gatewayRouterIp"][0] == (routers["interRouterClientIp"][0])
        ):
            problems.append(("interRouterClientIp", "must differ from gatewayRouterIp"))
        return problems

    def _router_placements(self) -> dict[str, tuple[IPv4Address, IPv4Network]]:
        """Each router address of the chosen topology and the subnet it sits on, by config key
        (for validation messages only; the topology reads `router_addresses`)."""
        if self.topology == "single":
            return {"gatewayRouterIp": (self.router_addresses().gateway, self.network_cidr)}
        addresses = self.router_addresses()
        assert addresses.inter_client is not None
        assert addresses.inter_service is not None
        return {
            "gatewayRouterIp": (addresses.gateway, self.client_cidr),
            "interRouterClientIp": (addresses.inter_client, self.client_cidr),
            "interRouterServiceIp": (addresses.inter_service, self.service_cidr),
        }

    def router_addresses(self) -> RouterAddresses:
        """The routers' addresses: configured, or the handout's .254 / .253 defaults."""
        if self.topology == "single":
            return RouterAddresses(self.gateway_router_ip or _top_of(self.network_cidr, 1))
        return RouterAddresses(
            gateway=self.gateway_router_ip or _top_of(self.client_cidr, 1),
            inter_client=self.inter_router_client_ip or _top_of(self.client_cidr, 2),
            inter_service=self.inter_router_service_ip or _top_of(self.service_cidr, 1),
        )

    def image_for(self, role: Role) -> str | None:
        return self.image_by_role.get(role, self.image)

    def flavor_for(self, role: Role) -> str | None:
        return self.flavor_by_role.get(role, self.flavor)


def _field_of(key: str) -> str:
    return next(name for name, f in LabConfig.model_fields.items() if f.alias == key)


def _top_of(network: IPv4Network, offset: int) -> IPv4Address:
    # offset 1 is .254 and offset 2 is .253 on a /24: the handout's router addresses.
    return network.broadcast_address - offset


def _usable_address_problem(address: IPv4Address, network: IPv4Network) -> str | None:
    if address not in network:
        return f"{address} is outside its subnet {network}"
    if address in (network.network_address, network.broadcast_address):
        return f"{address} is the network or broadcast address of {network}"
    first = network.network_address + FIRST_NODE_HOST
    last = first + len(ROLES) - 1
    if first <= address <= last:
        return f"{address} is reserved for the calculator's VMs ({first} to {last})"
    return None


def load_config(raw: Mapping[str, Any], stack: str) -> LabConfig:
    """Validate the project's config values (keys without the project prefix)."""
    values = {key: decode_value(value) for key, value in raw.items()}
    if not values.get("student"):
        # A stack name such as "Alice_2" is not a valid id; the error then says to set one.
        values["student"] = stack.lower()
    try:
        return LabConfig.model_validate(values)
    except ValidationError as err:
        raise ConfigError(_describe(err, values)) from None


def decode_value(value: Any) -> Any:
    """A config value as it was set: the engine (and a stack's update history) hands structured
    values (lists, maps) over as JSON text; anything else comes back as it is."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _alias_of(field_name: str) -> str:
    field = LabConfig.model_fields.get(field_name)
    return field.alias if field is not None and field.alias else field_name


def _describe(err: ValidationError, values: Mapping[str, Any]) -> str:
    lines: list[str] = []
    known = [_alias_of(name) for name in LabConfig.model_fields]
    for item in err.errors():
        location = [str(part) for part in item["loc"]]
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            key = location[0]
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            lines.append(f"{config_key(key)}: unknown key{hint} (pulumi config rm {key})")
            continue
        if item["type"] == "lab_config":
            lines.append(f"{config_key(location[0])}: {message}")
            continue
        key = ".".join([_alias_of(location[0]), *location[1:]]) if location else "(config)"
        shown = values.get(location[0]) if location else None
        lines.append(f"{config_key(key)}: {message}" + (f" (got {shown!r})" if shown else ""))
    return "invalid stack configuration:\n  " + "\n  ".join(lines)
