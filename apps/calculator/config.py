"""Settings of one calculator process, read once from environment variables (see README.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from calculator.arith import Limits
from calculator.compat import slotted

SERVICES: Final = ("sum", "sub", "mul", "div")
ROLES: Final = ("front", *SERVICES)
#: The lab's ports.
DEFAULT_PORTS: Final[dict[str, int]] = {
    "front": 50000,
    "sum": 50001,
    "sub": 50002,
    "mul": 50003,
    "div": 50004,
}


class ConfigError(ValueError):
    """An environment variable has a value the calculator cannot use."""


@slotted
@dataclass(frozen=True)
class Settings:
    role: str
    host: str
    port: int
    #: The front end's base URL of each service.
    service_urls: Mapping[str, str]
    #: Seconds one service call may take.
    timeout: float
    #: Seconds one front-end request may take in total.
    request_timeout: float
    limits: Limits
    #: Largest request body accepted, in bytes.
    max_body: int
    #: Open connections a process serves at once; more are answered 503 at once.
    max_connections: int
    #: Seconds a kept-alive connection may stay idle before the server closes it.
    idle_timeout: float
    #: Seconds from a request's first byte to its last (headers and body); 408 after that.
    read_timeout: float
    #: Front end: expressions evaluated at once; more are answered 503 at once.
    max_expressions: int
    #: Front end: service calls the expressions in flight may need in all; an expression that
    #: would take more is answered 503 at once (unless it would be the only one).
    max_calls: int
    #: Front end: kept-alive connections to one service (calls are pipelined on them).
    service_connections: int
    #: Front end: calls in flight to one service at once (its bulkhead).
    service_calls: int
    #: Front end: calls waiting for one service's connections; more fail at once with 503.
    service_queue: int


def _integer(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and 0 < value <= 3600):
        raise ConfigError(f"{name} must be more than 0 and at most 3600 seconds, got {raw}")
    return value


def _url(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip() or default
    parts = urlsplit(raw)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError(f"{name} must be an http:// URL with a host, like {default}, got {raw!r}")
    try:
        parts.port  # noqa: B018 -- urlsplit only validates the port when asked for it
    except ValueError:
        raise ConfigError(f"{name} has an invalid port: {raw!r}") from None
    return raw.rstrip("/")


def load(role: str, env: Mapping[str, str]) -> Settings:
    """Settings for ``role`` (one of ROLES, or "all" for the development mode)."""
    if role not in (*ROLES, "all"):
        raise ConfigError(f"unknown role {role!r}; expected one of {', '.join(ROLES)} or all")
    # Alone, a role serves its network (VM or container); "all" is for a developer's machine.
    default_host = "127.0.0.1" if role == "all" else "0.0.0.0"  # noqa: S104
    default_port = DEFAULT_PORTS["front" if role == "all" else role]
    service_urls = {
        name: _url(env, f"CALC_{name.upper()}_URL", f"http://127.0.0.1:{DEFAULT_PORTS[name]}")
        for name in SERVICES
    }
    try:
        limits = Limits(
            max_digits=_integer(env, "CALC_MAX_DIGITS", 1000, 1, 100_000),
            max_operations=_integer(env, "CALC_MAX_OPERATIONS", 1024, 1, 100_000),
            max_depth=_integer(env, "CALC_MAX_DEPTH", 128, 1, 10_000),
            division_digits=_integer(env, "CALC_DIVISION_DIGITS", 50, 1, 10_000),
        )
    except ValueError as error:  # pragma: no cover - the ranges above already exclude this
        raise ConfigError(str(error)) from None
    settings = Settings(
        role=role,
        host=env.get("CALC_LISTEN_HOST", "").strip() or default_host,
        port=_integer(env, "CALC_PORT", default_port, 0, 65535),
        service_urls=service_urls,
        timeout=_seconds(env, "CALC_TIMEOUT", 3.0),
        request_timeout=_seconds(env, "CALC_REQUEST_TIMEOUT", 10.0),
        limits=limits,
        max_body=_integer(env, "CALC_MAX_BODY", 16384, 64, 16 * 1024 * 1024),
        max_connections=_integer(env, "CALC_MAX_CONNECTIONS", 256, 1, 10_000),
        idle_timeout=_seconds(env, "CALC_IDLE_TIMEOUT", 30.0),
        read_timeout=_seconds(env, "CALC_READ_TIMEOUT", 10.0),
        max_expressions=_integer(env, "CALC_MAX_EXPRESSIONS", 256, 1, 10_000),
        max_calls=_integer(env, "CALC_MAX_CALLS", 512, 1, 1_000_000),
        service_connections=_integer(env, "CALC_SERVICE_CONNECTIONS", 2, 1, 64),
        service_calls=_integer(env, "CALC_SERVICE_CALLS", 256, 1, 100_000),
        service_queue=_integer(env, "CALC_SERVICE_QUEUE", 1024, 0, 1_000_000),
    )
    # A service must accept two operands of the longest allowed number.
    needed = 2 * (limits.max_digits + 2) + 16
    if role in SERVICES and settings.max_body < needed:
        raise ConfigError(
            f"CALC_MAX_BODY ({settings.max_body}) is too small for two operands of "
            f"CALC_MAX_DIGITS ({limits.max_digits}) digits: use at least {needed}"
        )
    return settings
