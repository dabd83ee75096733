"""Runs the Pulumi program under mocks and records what it declares.

Every registration (components included) is kept with its type, name, parent and inputs, so
tests can assert on the whole resource graph; stack outputs are captured from the root stack.
Mocks fill in only what a real provider would compute: ids, a floating IP's address.
"""

from __future__ import annotations

import json
import runpy
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO = Path(__file__).resolve().parents[2]
FLOATING_IP = "203.0.113.10"
EXTERNAL_NETWORK_ID = "ext-net-id"


@dataclass
class Declared:
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.name}_id"


@dataclass
class Program:
    resources: list[Declared] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    invokes: list[str] = field(default_factory=list)

    def of_type(self, suffix: str) -> list[Declared]:
        """Resources whose type token ends with `suffix` (e.g. ':Port')."""
        return [r for r in self.resources if r.type.endswith(suffix)]

    def named(self, name: str) -> Declared:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, got {len(matches)}"
        return matches[0]

    def by_id(self, resource_id: str) -> Declared:
        return next(r for r in self.resources if r.id == resource_id)


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self, program: Program) -> None:
        self.program = program

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "openstack:networking/floatingIp:FloatingIp":
            state["address"] = FLOATING_IP
        return f"{args.name}_id", state

    def call(
        self, args: pulumi.runtime.MockCallArgs
    ) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        self.program.invokes.append(args.token)
        if args.token == "openstack:networking/getNetwork:getNetwork":
            return {"id": EXTERNAL_NETWORK_ID, "name": args.args.get("name")}, []
        return {}, []


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: _Mocks, program: Program) -> None:
        super().__init__(mocks)
        self.program = program

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.program.resources.append(
                Declared(
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=rpc.deserialize_properties(request.object),
                )
            )
        return response


def run(
    config: Mapping[str, Any],
    *,
    stack: str = "alice",
    body: Callable[[], None] | None = None,
) -> Program:
    """Run `body` (default: the whole __main__.py) as stack `stack` with `config`."""
    program = Program()
    pulumi.runtime.set_all_config(
        {f"calculator-lab:{key}": _as_config(value) for key, value in config.items()}
    )
    mocks = _Mocks(program)
    monitor = _RecordingMonitor(mocks, program)
    # A fresh root stack per run, so exports of an earlier test never leak into this one.
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(
        mocks, project="calculator-lab", stack=stack, preview=False, monitor=monitor
    )

    def program_body() -> None:
        if body is not None:
            body()
        else:
            runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")

    _sync_await(run_pulumi_func(program_body))
    root = settings.get_root_resource()
    for key, value in getattr(root, "outputs", {}).items():
        program.outputs[key] = _sync_await(pulumi.Output.from_input(value).future())
    return program


def _as_config(value: Any) -> str:
    # The engine passes every config value as a string; structured ones as JSON.
    return value if isinstance(value, str) else json.dumps(value)
