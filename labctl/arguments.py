"""Command-line arguments that several `lab` commands take, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

StackArg = Annotated[str, typer.Argument(help="Stack name (Pulumi.<stack>.yaml).")]
