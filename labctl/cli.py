"""The `lab` command's entry point: one typer app, one subcommand per task."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console

from labctl import stacks
from labctl.check import check
from labctl.classroom.commands import class_app
from labctl.diagram import diagram
from labctl.image import image_app
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

StackArg = Annotated[str, typer.Argument(help="Stack name (Pulumi.<stack>.yaml).")]


@app.command()
def up(stack: StackArg = "dev") -> None:
    """Install what is missing, then `pulumi up` the stack and print its calculator URL."""
    url = stacks.up(stack)
    typer.echo(f"\ncalculator: {url}   try: curl -d '(5+6)*2' -X POST {url}")


@app.command()
def preview(stack: StackArg = "dev") -> None:
    """`pulumi preview` of the stack."""
    stacks.preview(stack)


@app.command()
def down(stack: StackArg = "dev") -> None:
    """`pulumi destroy` the stack and remove its state (its stack file stays)."""
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
    try:
        app()
    except stacks.LabError as err:
        console.print(f"[red]lab:[/red] {err}", highlight=False, soft_wrap=True)
        raise SystemExit(err.exit_code) from None
