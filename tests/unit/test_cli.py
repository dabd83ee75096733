"""The `lab` command's surface: `--help` answers without loading what only a running command
needs (the model, Pulumi, openstacksdk, Graphviz), its usage names the command as typed, and
scripts/lab's own usage comment lists every command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import typer

from labctl.cli import app

REPO = Path(__file__).resolve().parents[2]
# Each costs a tenth of a second or more to import; only running a command may need them.
HEAVY = frozenset({"openstack", "graphviz", "pulumi", "pydantic"})


def test_help_imports_no_heavy_module() -> None:
    # A fresh interpreter: this one has imported everything the other tests needed.
    code = textwrap.dedent(
        """
        import sys
        from labctl.cli import app
        try:
            app(["--help"], prog_name="lab")
        except SystemExit:
            pass
        sys.stderr.write(" ".join(sorted({name.split(".")[0] for name in sys.modules})))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert "Usage: lab" in result.stdout
    assert HEAVY.isdisjoint(result.stderr.split()), sorted(HEAVY & set(result.stderr.split()))


def test_usage_names_the_command_as_typed() -> None:
    result = subprocess.run(
        ["scripts/lab", "--help"],
        cwd=REPO,
        env={**os.environ, "COLUMNS": "100"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Usage: scripts/lab [OPTIONS] COMMAND [ARGS]..." in result.stdout


def test_the_scripts_usage_comment_lists_every_command() -> None:
    header = "".join(
        line for line in (REPO / "scripts/lab").read_text().splitlines(True) if line[:1] == "#"
    )
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    missing = [name for name in commands if not re.search(rf"\b{name}\b", header)]
    assert not missing, f"scripts/lab's usage comment does not mention {missing}"
