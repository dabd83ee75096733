"""The class's workspace runs one `pulumi stack rm` at a time, whatever the workers do.

Every `pulumi stack rm` rewrites the workspace settings file that all of a class's stacks share
(labctl/classroom/automation.py); tests/engine/test_class_workspace_files.py sees that with the
real CLI under strace, where an overlap needs two destroys to end together. Here the Automation
API runs a stand-in `pulumi` that logs when each command starts and ends and takes 0.3 s, so
that four workers removing stacks at once would overlap every time if nothing held them apart.
"""

from __future__ import annotations

import threading
from itertools import pairwise
from pathlib import Path

from pulumi.automation import PulumiCommand

from labctl.classroom.automation import ExplicitWorkspace

FAKE_PULUMI = """\
#!/bin/sh
if [ "$1" = version ]; then echo v3.260.0; exit 0; fi
echo "start $(date +%s.%N) $*" >>"$FAKE_LOG"
sleep 0.3
echo "end $(date +%s.%N) $*" >>"$FAKE_LOG"
"""


def _workspace(tmp_path: Path) -> tuple[ExplicitWorkspace, Path]:
    cli = tmp_path / "cli" / "bin" / "pulumi"
    cli.parent.mkdir(parents=True)
    cli.write_text(FAKE_PULUMI)
    cli.chmod(0o755)
    log = tmp_path / "calls.log"
    ws = ExplicitWorkspace(
        work_dir=str(tmp_path),
        env_vars={"FAKE_LOG": str(log)},
        pulumi_command=PulumiCommand(root=str(cli.parent.parent), skip_version_check=True),
    )
    return ws, log


def _at_once(calls: list[threading.Thread]) -> None:
    for call in calls:
        call.start()
    for call in calls:
        call.join()


def _overlaps(log: Path, command: str) -> tuple[int, list[tuple[float, float]]]:
    starts: dict[str, float] = {}
    spans = []
    for line in log.read_text().splitlines():
        kind, when, args = line.split(" ", 2)
        args = args.removeprefix("--non-interactive ")
        if not args.startswith(command):
            continue
        if kind == "start":
            starts[args] = float(when)
        else:
            spans.append((starts.pop(args), float(when)))
    spans.sort()
    return len(spans), [(a[1], b[0]) for a, b in pairwise(spans) if b[0] < a[1]]


def test_stack_removals_never_overlap(tmp_path: Path) -> None:
    ws, log = _workspace(tmp_path)
    _at_once([threading.Thread(target=ws.remove_stack, args=(f"s{i}",)) for i in range(4)])
    count, overlaps = _overlaps(log, "stack rm")
    assert count == 4
    assert overlaps == []


def test_the_stand_in_sees_commands_that_do_overlap(tmp_path: Path) -> None:
    # The control: stacks are selected side by side (nothing shared is written), and the same
    # log shows them overlapping, so an overlap of removals would not go unseen.
    ws, log = _workspace(tmp_path)
    _at_once([threading.Thread(target=ws.select_stack, args=(f"s{i}",)) for i in range(4)])
    count, overlaps = _overlaps(log, "stack --stack")
    assert count == 4
    assert overlaps
