"""Starts real calculator processes on free loopback ports, for the e2e tests and the benchmark.

Each process is told ``CALC_PORT=0`` and announces the port it got in its first log line, so
there is no race for ports and a deployment on the lab's 5000x ports can keep running.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

#: The calculator package's parent; CALC_TEST_APPS points the e2e tests at another copy (say, an
#: older commit's ``apps``, to see which tests fail on it).
APPS = Path(os.environ.get("CALC_TEST_APPS") or Path(__file__).resolve().parents[2] / "apps")
SERVICES = ("sum", "sub", "mul", "div")
#: The interpreter the calculator's processes run on: the tests' own unless CALCLAB_APP_PYTHON
#: names another (scripts/test-all runs these tests again on the oldest and newest Python the
#: calculator supports, while pytest itself stays on the project's).
APP_PYTHON = os.environ.get("CALCLAB_APP_PYTHON") or sys.executable


class Process:
    """One ``python3 -m calculator <role>`` (python3 being APP_PYTHON) with its stderr collected
    line by line; `wrapper` goes before it (``ip netns exec NS``, to run it in a namespace)."""

    def __init__(
        self,
        role: str,
        env: Mapping[str, str] | None = None,
        port: int = 0,
        *,
        apps: Path = APPS,
        wrapper: Sequence[str] = (),
    ) -> None:
        self.role = role
        self.extra_env = dict(env or {})
        self.lines: list[str] = []
        environment = {
            **os.environ,
            "PYTHONPATH": str(apps),
            "CALC_LISTEN_HOST": "127.0.0.1",
            "CALC_PORT": str(port),
            **self.extra_env,
        }
        self.popen = subprocess.Popen(
            [*wrapper, APP_PYTHON, "-m", "calculator", role],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(ready,), daemon=True)
        self._reader.start()
        try:
            event = ready.get(timeout=15)
        except queue.Empty:
            event = None
        if event is None:
            self.stop()
            raise RuntimeError(f"calculator {role} did not start:\n" + "".join(self.lines))
        self.port = int(event["port"])
        self.url = f"http://127.0.0.1:{self.port}"

    def _read(self, ready: queue.Queue[dict[str, Any] | None]) -> None:
        assert self.popen.stderr is not None
        announced = False
        for line in self.popen.stderr:
            self.lines.append(line)
            if not announced and '"event":"listening"' in line:
                ready.put(json.loads(line))
                announced = True
        if not announced:
            ready.put(None)

    def records(self) -> list[dict[str, Any]]:
        """The JSON log lines so far."""
        return [json.loads(line) for line in list(self.lines) if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self._reader.join(timeout=5)
        return self.popen.returncode


class Cluster:
    """The four services and a front end wired to them (or to the given URLs)."""

    def __init__(
        self,
        front_env: Mapping[str, str] | None = None,
        *,
        service_env: Mapping[str, str] | None = None,
        apps: Path = APPS,
    ) -> None:
        self.services: dict[str, Process] = {}
        self.front: Process | None = None
        try:
            for name in SERVICES:
                self.services[name] = Process(name, service_env, apps=apps)
            env = {f"CALC_{name.upper()}_URL": proc.url for name, proc in self.services.items()}
            self.front = Process("front", {**env, **(front_env or {})}, apps=apps)
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        assert self.front is not None
        return self.front.url

    def stop(self) -> None:
        for proc in [*self.services.values(), *([self.front] if self.front else [])]:
            proc.stop()


def request(
    url: str,
    body: str | bytes | None = None,
    *,
    method: str | None = None,
    path: str = "/",
    headers: Mapping[str, str] | None = None,
    timeout: float = 15.0,
) -> tuple[int, str, dict[str, str]]:
    """One HTTP request on a fresh connection: (status, body text, lower-cased headers)."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        data = body.encode() if isinstance(body, str) else body
        connection.request(
            method or ("GET" if data is None else "POST"),
            path,
            body=data,
            headers=dict(headers or {}),
        )
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        return response.status, text, {k.lower(): v for k, v in response.getheaders()}
    finally:
        connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False
