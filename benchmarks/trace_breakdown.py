"""Where a `pulumi` command's time goes, from its OpenTelemetry trace (`--otel-traces file://`).

The CLI writes one JSON document per line (OTLP: resourceSpans > scopeSpans > spans). Only
the CLI's own spans are used (service `pulumi-cli`): each gRPC call it makes to a plugin or
the program appears there, so nothing is counted twice. Every instant of the command's root
span goes to one slice, the first of SLICES that is busy at that instant:

- refresh: the engine reading resources back from the cloud (ResourceProvider/Read);
- provider: the provider working on resources (Check, Diff, Create, Update, Delete, Invoke);
- plugins: starting plugins and talking to them outside resource work (launch, handshake,
  configure, plugin info, the language host's set-up calls);
- program start-up: the program's run until it declares its first resource: the Python
  interpreter, imports, reading and validating the config, and the OpenStack preflight;
- program: the rest of the program's run, while no provider call is in flight;
- engine: the rest of the root span (state read and write, planning, waiting).

The slices add up to the root span; the command's wall time minus the root span is the CLI
process starting and exiting ("cli").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SLICES = ("refresh", "provider", "plugins", "program start-up", "program", "engine")
COLUMNS = ("cli", *SLICES)

_PROVIDER_WORK = {"Check", "Diff", "Create", "Update", "Delete", "Invoke", "Call", "Construct"}
_PLUGIN_TALK = {
    "Handshake",
    "GetPluginInfo",
    "Configure",
    "CheckConfig",
    "DiffConfig",
    "GetSchema",
    "Attach",
    "GetRequiredPackages",
    "GetRequiredPlugins",
    "About",
    "InstallDependencies",
}


@dataclass(frozen=True)
class Breakdown:
    seconds: dict[str, float]  # COLUMNS -> seconds
    calls: dict[str, int]  # provider method -> number of calls ("Read", "Create", ...)


def _spans(path: Path) -> list[dict[str, Any]]:
    spans: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        for resource in json.loads(line).get("resourceSpans", []):
            attributes = resource.get("resource", {}).get("attributes", [])
            service = next(
                (a["value"].get("stringValue") for a in attributes if a["key"] == "service.name"),
                "",
            )
            if service != "pulumi-cli":
                continue
            for scope in resource.get("scopeSpans", []):
                spans.extend(scope.get("spans", []))
    return spans


def _slice_of(name: str) -> str | None:
    service, _, method = name.rpartition("/")
    if service == "pulumirpc.ResourceProvider":
        if method == "Read":
            return "refresh"
        if method in _PROVIDER_WORK:
            return "provider"
        if method in _PLUGIN_TALK:
            return "plugins"
    if service == "pulumirpc.LanguageRuntime" and method in _PLUGIN_TALK:
        return "plugins"
    if name == "newPlugin":
        return "plugins"
    return None


def breakdown(path: Path, wall: float) -> Breakdown:
    """The slices of the command traced into `path`, which took `wall` seconds end to end."""
    spans = _spans(path)
    roots = [s for s in spans if s["name"] == "pulumi"]
    if not roots:
        raise ValueError(f"{path}: no root span `pulumi` in the trace")
    root = max(roots, key=lambda s: int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]))
    begin, end = int(root["startTimeUnixNano"]), int(root["endTimeUnixNano"])
    intervals: list[tuple[int, int, str]] = []
    calls: dict[str, int] = {}
    registrations = [
        int(s["startTimeUnixNano"])
        for s in spans
        if s["name"] == "pulumirpc.ResourceMonitor/RegisterResource"
    ]
    for span in spans:
        start, stop = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
        name = span["name"]
        if name == "run-program":
            first = min((t for t in registrations if start <= t <= stop), default=stop)
            intervals += [(start, first, "program start-up"), (first, stop, "program")]
            continue
        kind = _slice_of(name)
        if kind is None:
            continue
        intervals.append((start, stop, kind))
        if kind in ("refresh", "provider"):
            method = name.rpartition("/")[2]
            calls[method] = calls.get(method, 0) + 1
    seconds = _sweep(intervals, begin, end)
    seconds["cli"] = max(0.0, wall - (end - begin) / 1e9)
    return Breakdown({column: seconds.get(column, 0.0) for column in COLUMNS}, calls)


def _sweep(intervals: list[tuple[int, int, str]], begin: int, end: int) -> dict[str, float]:
    """Each instant of [begin, end] to the first busy slice of SLICES, "engine" if none."""
    rank = {name: index for index, name in enumerate(SLICES)}
    events: list[tuple[int, int, int]] = []  # (time, +1/-1, slice rank)
    for start, stop, kind in intervals:
        start, stop = max(start, begin), min(stop, end)
        if stop > start:
            events += [(start, 1, rank[kind]), (stop, -1, rank[kind])]
    events.sort()
    busy = [0] * len(SLICES)
    totals = [0] * len(SLICES)
    engine = rank["engine"]
    now = begin
    for instant, change, index in events:
        current = next((i for i, n in enumerate(busy) if n > 0), engine)
        totals[current] += instant - now
        now = instant
        busy[index] += change
    totals[engine] += end - now
    return {name: totals[index] / 1e9 for index, name in enumerate(SLICES)}
