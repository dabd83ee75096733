"""The `lab` command's entry point: one typer app, one subcommand per task.

Every command imports what it needs when it runs (the model, Pulumi, openstacksdk, Graphviz),
so that `lab --help` and a mistyped command answer at once; tests/unit/test_cli.py keeps it so.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from labctl.arguments import StackArg
from labctl.check import check
from labctl.classroom.commands import class_app
from labctl.diagram import diagram
from labctl.errors import LabError
from labctl.image.command import image_app
from labctl.paths import ROOT
from labctl.snapshot import snapshot_app

app = typer.Typer(
    name="lab",
    help="Deploy and operate calculator-lab stacks (one per student).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

# The command as the user typed it, for the usage lines (scripts/lab sets it); without it click
# says `python -m labctl`.
PROG_NAME_VARIABLE = "CALCLAB_PROG_NAME"


@app.command()
def up(stack: StackArg = "dev") -> None:
    """Install what is missing, then `pulumi up` the stack and print its calculator URL."""
    from labctl import stacks

    url = stacks.up(stack)
    typer.echo(f"\ncalculator: {url}   try: curl -d '(5+6)*2' -X POST {url}")


@app.command()
def preview(stack: StackArg = "dev") -> None:
    """`pulumi preview` of the stack."""
    from labctl import stacks

    stacks.preview(stack)


@app.command()
def down(stack: StackArg = "dev") -> None:
    """`pulumi destroy` the stack and remove its state (its stack file stays)."""
    from labctl import stacks

    stacks.down(stack)


@app.command()
def new(
    student: Annotated[str, typer.Argument(help="The student's id, e.g. carol.")],
    topology: Annotated[Literal["single", "client"], typer.Argument()] = "single",
    template: Annotated[
        Path, typer.Option("--from", help="Example stack file to copy cloud settings from.")
    ] = ROOT / "Pulumi.alice.yaml",
) -> None:
    """Write and validate Pulumi.<student>.yaml for a new student."""
    from labctl import stacks

    path = stacks.new(student, topology, template)
    typer.echo(
        f"created {path.name}; next: pulumi stack select --create {student} && "
        'pulumi config set sshPublicKey "$(cat ~/.ssh/id_ed25519.pub)"'
    )


app.command()(check)
app.command()(diagram)
app.add_typer(snapshot_app, name="snapshot")
app.add_typer(image_app, name="image")
app.add_typer(class_app, name="class")


def main() -> None:
    # Taken out of the environment: a `python -m labctl` started from here names itself.
    prog_name = os.environ.pop(PROG_NAME_VARIABLE, None)
    try:
        app(prog_name=prog_name)
    except LabError as err:
        console.print(f"[red]lab:[/red] {err}", highlight=False, soft_wrap=True)
        raise SystemExit(err.exit_code) from None
