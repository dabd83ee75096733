"""The stack's containers as the Docker engine lists them: one request, no Pulumi.

What the Docker target needs to replace a container that stopped or was removed out of band
(lab/replacement.py) without refreshing the whole stack: the engine's own list of the
student's containers (by label), with their state and the trigger each records. Standard
library only: the program talks to the engine the way the provider does (DOCKER_HOST).
"""

from __future__ import annotations

import http.client
import json
import socket
import urllib.parse
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from lab.names import STUDENT_LABEL, TRIGGER_LABEL
from lab.replacement import Seen

DEFAULT_HOST = "unix:///var/run/docker.sock"
TIMEOUT_SECONDS = 10
# Created but never started, stopped, or dead: Docker runs none of these; `restarting` and
# `paused` containers are the engine's or the user's business, `removing` ones are gone.
_FAILED = frozenset({"created", "exited", "dead"})


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=TIMEOUT_SECONDS)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT_SECONDS)
        sock.connect(self._path)
        self.sock = sock


def read_containers(host: str, student: str) -> dict[str, tuple[Seen, ...]] | None:
    """Name -> the student's containers bearing it; None when `host` is not one this reads
    (only unix:// and plain tcp://)."""
    url = urllib.parse.urlsplit(host)
    connection: http.client.HTTPConnection
    if url.scheme == "unix":
        connection = _UnixConnection(url.path)
    elif url.scheme == "tcp" and url.hostname:
        connection = http.client.HTTPConnection(url.hostname, url.port or 2375, TIMEOUT_SECONDS)
    else:
        return None
    filters = json.dumps({"label": [f"{STUDENT_LABEL}={student}"]})
    try:
        connection.request("GET", "/containers/json?all=1&filters=" + urllib.parse.quote(filters))
        answer = connection.getresponse()
        body = answer.read()
    finally:
        connection.close()
    if answer.status != 200:
        raise OSError(f"the Docker engine at {host} answered {answer.status}: {body[:200]!r}")
    return seen_containers(json.loads(body))


def seen_containers(listed: list[Mapping[str, Any]]) -> dict[str, tuple[Seen, ...]]:
    """Docker's container list (GET /containers/json) as lab/replacement.py sees it."""
    seen: dict[str, list[Seen]] = defaultdict(list)
    for container in listed:
        state = container.get("State", "")
        if state == "removing":
            continue
        labels = container.get("Labels") or {}
        for name in container.get("Names") or ():
            seen[name.removeprefix("/")].append(
                Seen(container["Id"], state in _FAILED, labels.get(TRIGGER_LABEL))
            )
    return {name: tuple(found) for name, found in seen.items()}
