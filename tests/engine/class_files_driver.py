"""What `lab class up`, `status` and `destroy` run, for a class whose program creates nothing:
the console's own workspace, runner and Automation API calls, with the checkout's project
file but a program of one line, so that a test can watch every file the workers write
(tests/engine/test_class_workspace_files.py runs this under strace).

    python -m tests.engine.class_files_driver WORK_DIR STUDENTS WORKERS

WORK_DIR receives the roster, the workspace, the program and `threads.json`: per student, the
native id of the worker thread that ran it and when (time.time(), strace's clock), so that
each write the trace shows can be put down to one student, and the value of
PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION the workers ran with. The state backend and the
passphrase come from the environment (PULUMI_BACKEND_URL, PULUMI_CONFIG_PASSPHRASE).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from labctl.classroom import automation, runner
from labctl.classroom.report import ClassReport, Outcome, failed
from labctl.classroom.roster import Roster, Student, load_roster

PROGRAM = 'import pulumi\n\npulumi.export("student", pulumi.get_stack())\n'
OPERATIONS: tuple[runner.Operation, ...] = ("up", "status", "destroy")


def roster_text(students: int) -> str:
    ids = [f"c20-w{i:02d}" for i in range(1, students + 1)]
    entries = "".join(f"  - id: {s}\n    topology: single\n" for s in ids)
    return (
        "class: c20-files\n"
        "defaults:\n  target: openstack\n  externalNetwork: public\n"
        "  image: debian-12\n  flavor: m1.tiny\n"
        f"students:\n{entries}"
    )


def main(work: Path, students: int, workers: int) -> int:
    roster_path = work / "class.yaml"
    roster_path.write_text(roster_text(students))
    roster: Roster = load_roster(roster_path)
    (work / "program").mkdir(exist_ok=True)
    (work / "program" / "__main__.py").write_text(PROGRAM)
    env = automation.pulumi_environment({"openstack"})
    project = {**automation.project_file(), "main": str(work / "program")}
    ws = automation.workspace_at(work / "workspace", project, env)

    intervals: list[dict[str, object]] = []
    lock = threading.Lock()
    real = runner.run_student

    def observed(
        ctx: runner.RunContext, operation: runner.Operation, student: Student, outcome: Outcome
    ) -> None:
        started = time.time()
        try:
            real(ctx, operation, student, outcome)
        finally:
            with lock:
                intervals.append(
                    {
                        "student": student.id,
                        "operation": operation,
                        "thread": threading.get_native_id(),
                        "start": started,
                        "end": time.time(),
                    }
                )

    runner.run_student = observed  # the runner's pool calls it by this module name
    failures = 0
    for operation in OPERATIONS:
        # As `_operate` does: the backend's stacks read once, before the workers start.
        ctx = runner.RunContext(
            ws, automation.existing_stacks(ws), env=env, defaults=automation.project_defaults()
        )
        report = ClassReport(roster.name, operation, runner.outcomes_for(roster), workers)
        runner.run_class(ctx, operation, roster, report, workers=workers)
        for outcome in report.outcomes:
            print(f"{operation} {outcome.student}: {outcome.state} {outcome.error or ''}")
        failures += len(failed(report))
    (work / "threads.json").write_text(
        json.dumps(
            {
                "runs": intervals,
                # What the workers' `pulumi` ran with: no plugin acquired behind our back.
                "acquisition_disabled": ws.env_vars.get(
                    "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"
                ),
            }
        )
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
