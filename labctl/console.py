"""The console logs of an OpenStack stack's VMs that do not answer `lab check`: what each VM
says about itself, without SSH.

The servers are named from the stack's outputs (privateIps); their logs are read through Nova's
API in parallel, and each is shown as the line the user data writes there about the role
(`calculator-lab <role>: ...`, lab/cloud_init.py), or as the log's last lines when there is
none, or as why it could not be read. labctl/check.py decides which roles failed and shows the
notes under its report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rich.markup import escape

from lab.cloud_init import console_line_prefix
from lab.names import FRONT, physical_name
from labctl import cloud

# Lines of a console log shown when the user data's line is not in it.
CONSOLE_TAIL = 10

# Terminal colour and cursor sequences the guest's boot messages carry.
_ESCAPES = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")


@dataclass(frozen=True)
class ConsoleNote:
    """What a failing VM's console log says: the user data's line, or the log's tail, or
    why the log could not be read."""

    role: str
    server: str
    line: str | None = None
    tail: tuple[str, ...] = ()
    error: str | None = None


def server_names(outputs: Mapping[str, Any], roles: Sequence[str]) -> dict[str, str]:
    """role -> server name, for an OpenStack stack's outputs (privateIps: VM name -> address;
    the student id is the front end's name without its role)."""
    private = outputs.get("privateIps")
    if outputs.get("target") != "openstack" or not isinstance(private, dict):
        return {}
    suffix = physical_name("", FRONT)
    front = next((name for name in private if str(name).endswith(suffix)), None)
    if front is None:
        return {}
    student = front.removesuffix(suffix)
    return {
        role: physical_name(student, role)
        for role in roles
        if physical_name(student, role) in private
    }


def console_lines(log: str) -> list[str]:
    return [line for raw in log.splitlines() if (line := _ESCAPES.sub("", raw).rstrip())]


def read_console(role: str, server: str, log: str, tail: int = CONSOLE_TAIL) -> ConsoleNote:
    """The last line the user data wrote about `role`, wherever it sits on the line (the
    kernel or cloud-init may prefix it); otherwise the log's last `tail` lines."""
    prefix = console_line_prefix(role)
    lines = console_lines(log)
    for line in reversed(lines):
        at = line.find(prefix)
        if at >= 0:
            return ConsoleNote(role, server, line=line[at:])
    return ConsoleNote(role, server, tail=tuple(lines[-tail:]))


def _console_of(conn: Any, role: str, server: str) -> ConsoleNote:
    try:
        # Nova's name filter is a regular expression that matches anywhere in the name.
        found = [s for s in conn.compute.servers(name=server) if s.name == server]
        if not found:
            return ConsoleNote(
                role,
                server,
                error=f"no server {server} in this project (deleted, or the stack is down?)",
            )
        # The newest, if a failed create left an older one of the same name behind.
        newest = max(found, key=lambda s: s.created_at or "")
        output = conn.compute.get_server_console_output(newest)
    except cloud.sdk_errors() as error:
        return ConsoleNote(role, server, error=_console_failure(error))
    return read_console(role, server, str((output or {}).get("output") or ""))


def _console_failure(error: Exception) -> str:
    status = getattr(error, "status_code", None)
    reason = cloud.first_line(error)
    if status == 403:
        return f"this user may not read its console log ({reason})"
    if status == 404:
        return f"the server is gone ({reason})"
    return f"its console log could not be read: {reason}"


def console_notes(
    servers: Mapping[str, str], connect: Callable[[], Any] = cloud.connect
) -> tuple[ConsoleNote, ...]:
    """Each failing VM's console, read in parallel (Nova answers each in about a second)."""
    if not servers:
        return ()
    try:
        conn = connect()
    except cloud.CloudError as error:
        return tuple(
            ConsoleNote(role, name, error=f"console log not read: {error}")
            for role, name in servers.items()
        )
    try:
        with ThreadPoolExecutor(max_workers=len(servers)) as pool:
            futures = [pool.submit(_console_of, conn, role, name) for role, name in servers.items()]
            return tuple(future.result() for future in futures)
    finally:
        conn.close()


def render_consoles(notes: Iterable[ConsoleNote]) -> list[str]:
    out: list[str] = []
    for note in notes:
        head = f"[bold]{note.role}[/bold] ({note.server}) console:"
        if note.line is not None:
            out.append(f"{head} {escape(note.line)}")
        elif note.error is not None:
            out.append(f"{head} {escape(note.error)}")
        elif note.tail:
            out.append(f"{head} no calculator line yet; its last {len(note.tail)} lines:")
            out.extend(f"    {escape(line)}" for line in note.tail)
        else:
            out.append(f"{head} empty")
    return out
