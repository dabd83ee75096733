"""The class console's pure parts: the roster (every problem on its line), a class's quota
sums against the topology model, the preflight's split into class-wide and per-student
problems, the runner's isolation and Ctrl-C handling (with stand-in operations), the
converged-stack test and the JSON/CSV report."""

from __future__ import annotations

import csv
import json
import textwrap
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab.quota import FlavorSize, stack_needs, total_needs
from lab.topology import build_topology
from labctl.classroom import commands, runner
from labctl.classroom import preflight as class_preflight
from labctl.classroom.report import ClassReport, Outcome, write_report
from labctl.classroom.roster import Roster, RosterError, load_roster, read_ids, write_roster
from preflight.facts import CloudFacts

SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPOFVePzrOpa7eDkuiuq+IG/Fpc6rGH7fq0i4kE4jaQC a@b"
FLAVORS = {"m1.tiny": FlavorSize(1, 512), "m1.small": FlavorSize(2, 2048)}

GOOD = f"""\
class: demo
defaults:
  target: openstack
  externalNetwork: public
  image: debian-12
  flavor: m1.tiny
students:
  - id: cls-a
    topology: single
  - id: cls-b
    topology: client
    flavorByRole: {{front: m1.small}}
  - id: cls-c
    topology: client
    sshPublicKey: {SSH_KEY}
    sshAllowedCidr: 198.51.100.0/24
"""


def write(tmp_path: Path, text: str, name: str = "class.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(path: Path) -> list[str]:
    with pytest.raises(RosterError) as caught:
        load_roster(path)
    return caught.value.problems


# --- roster ----------------------------------------------------------------------------------


def test_a_valid_roster_merges_defaults_under_each_entry(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, GOOD))
    assert roster.name == "demo"
    assert [(s.id, s.line) for s in roster.students] == [("cls-a", 8), ("cls-b", 10), ("cls-c", 13)]
    b = roster.students[1].config
    assert (b.student, b.topology, b.target, b.image) == (
        "cls-b",
        "client",
        "openstack",
        "debian-12",
    )
    assert b.flavor_by_role == {"front": "m1.small"}
    assert roster.students[1].stack == "cls-b"


def test_every_problem_is_listed_at_once_with_its_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          target: openstack
          externalNetwork: public
          image: debian-12
          flavor: m1.tiny
        students:
          - id: cls-a
            topology: clinet
          - id: Cls_B
          - id: cls-a
          - topology: single
          - id: cls-d
            networkCidr: 10.0.2.0/28
            keyPair: k
            keyPair: k
          - id: cls-e
            sshPublicKey: ssh-ed25519 AAAA x
            keyPair: laptop
        """,
    )
    assert problems_of(path) == [
        "class.yaml:8: student cls-a: calculator-lab:topology: Input should be 'single' or 'client' (got 'clinet')",
        "class.yaml:9: id: 'Cls_B' must start with a lowercase letter and hold only a-z, 0-9 and '-' (24 characters at most)",
        "class.yaml:10: id: 'cls-a' is already on line 7",
        "class.yaml:11: student entry has no 'id'",
        "class.yaml:13: student cls-d: calculator-lab:networkCidr: 10.0.2.0/28 is too small: use a /27 or larger (the lab uses /24) (got '10.0.2.0/28')",
        "class.yaml:15: student entry: duplicate key 'keyPair' (first on line 14)",
        "class.yaml:17: student cls-e: calculator-lab:sshPublicKey: set either keyPair or sshPublicKey, not both",
    ]


def test_a_bad_default_is_reported_once_on_its_own_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults:
          target: openstack
          externalNetwork: public
          image: debian-12
          flavr: m1.tiny
        students:
          - id: cls-a
          - id: cls-b
        """,
    )
    assert problems_of(path) == [
        "class.yaml:5: defaults: calculator-lab:flavr: unknown key; did you mean 'flavor'? (students cls-a, cls-b)"
    ]


def test_a_key_required_but_missing_everywhere_points_at_the_entry(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults: {target: openstack, externalNetwork: public, image: debian-12}
        students:
          - id: cls-a
          - id: cls-b
            flavor: m1.small
        """,
    )
    assert problems_of(path) == [
        "class.yaml:3: student cls-a: calculator-lab:flavor: is required when target is openstack"
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("students: [\n  {id: a\n", "class.yaml:3: not valid YAML: "),
        ("", "class.yaml:1: empty roster; write one with: lab class init"),
        ("- id: a\n", "class.yaml:1: the roster must be a map of keys to values"),
        ("defaults: {}\n", "class.yaml:1: no 'students' list (one entry per student: - id: alice)"),
        ("students: []\nteacher: x\n", "class.yaml:1: students: the list is empty"),
        (
            "students:\n  - id: a\ndefaults:\n  student: b\n",
            "class.yaml:4: defaults: 'student' is per student",
        ),
    ],
)
def test_structural_problems_have_lines(tmp_path: Path, text: str, expected: str) -> None:
    problems = problems_of(write(tmp_path, text))
    assert problems[0].startswith(expected), problems


def test_docker_students_need_their_own_host_port(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        defaults: {target: docker}
        students:
          - id: cls-a
          - id: cls-b
            dockerHostPort: 50100
          - id: cls-c
        """,
    )
    assert problems_of(path) == [
        "class.yaml:6: student cls-c: calculator-lab:dockerHostPort: 50000 is already cls-a's; give each Docker student its own port"
    ]


def test_init_writes_a_roster_that_validates(tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("cls-a\n# absent today\ncls-b  # late\n\n")
    ids = read_ids("cls-c, cls-d", ids_file)
    assert ids == ["cls-c", "cls-d", "cls-a", "cls-b"]
    roster = write_roster(tmp_path / "r.yaml", ids, topology="client", class_name="demo")
    assert [s.id for s in load_roster(tmp_path / "r.yaml").students] == ids
    assert {s.config.topology for s in roster.students} == {"client"}
    with pytest.raises(RosterError, match="exists already"):
        write_roster(tmp_path / "r.yaml", ids)


def test_init_refuses_a_bad_id_and_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RosterError, match="'Bad_1' must start with a lowercase letter"):
        write_roster(tmp_path / "r.yaml", ["cls-a", "Bad_1"])
    assert list(tmp_path.iterdir()) == []


def test_select_keeps_the_named_students_only(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, GOOD))
    assert [s.id for s in roster.select(["cls-c", "cls-a"]).students] == ["cls-a", "cls-c"]
    with pytest.raises(RosterError, match="no student 'zed'"):
        roster.select(["zed"])


def test_the_example_roster_is_valid() -> None:
    roster = load_roster(Path(__file__).resolve().parents[2] / "examples" / "class.yaml")
    assert [s.config.topology for s in roster.students] == ["single", "client", "client"]


# --- the class's sums, against the topology model -------------------------------------------


def test_a_class_needs_the_sum_of_its_students_topologies(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, GOOD))
    needs = [stack_needs(s.config, build_topology(s.config), FLAVORS) for s in roster.students]
    total = total_needs(needs)
    topologies = [build_topology(s.config) for s in roster.students]
    # Counted here from the model directly: nodes, subnets, routers, router interfaces.
    assert total.instances == sum(len(t.nodes) for t in topologies) == 15
    assert total.networks == total.subnets == sum(len(t.subnets) for t in topologies) == 5
    assert total.routers == sum(len(t.routers) for t in topologies) == 5
    assert total.floating_ips == 3
    assert total.security_groups == 15
    # cls-b's front end is an m1.small (2 cores, 2048 MiB), every other VM an m1.tiny.
    assert (total.cores, total.ram_mib) == (14 * 1 + 2, 14 * 512 + 2048)
    interfaces = sum(len(r.interfaces) for t in topologies for r in t.routers)
    assert interfaces == 1 + 3 + 3
    assert total.ports == 15 + interfaces + 5
    assert total.key_pairs == 1  # only cls-c gives a public key to make one from
    # Per node: app port and ping, SSH only for cls-c, plus Neutron's two egress rules.
    assert total.security_group_rules == 10 * (2 + 2) + 5 * (3 + 2)


# --- preflight: class-wide refusal vs per-student problems ------------------------------------


def facts(*, instances_limit: int, images: dict[str, str] | None = None) -> CloudFacts:
    unlimited = (-1, 0)
    return CloudFacts(
        cloud="test",
        images=images if images is not None else {"debian-12": "active"},
        flavors=FLAVORS,
        networks={"public": ("net-1", True)},
        key_pairs=frozenset(),
        quota={"instances": (instances_limit, 3), "cores": unlimited, "ram_mib": unlimited},
    )


def run_preflight(
    monkeypatch: pytest.MonkeyPatch, roster: Roster, cloud: CloudFacts
) -> class_preflight.ClassPreflight:
    closed = []
    conn = SimpleNamespace(close=lambda: closed.append(True))
    monkeypatch.setattr(class_preflight, "connect", lambda env, provider: (conn, "cloud 'test'"))
    monkeypatch.setattr(class_preflight, "read_cloud", lambda c, cloud_name: cloud)
    result = class_preflight.run(roster, roster.students, {})
    assert closed == [True]
    return result


def test_a_class_over_quota_is_refused_as_a_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster = load_roster(write(tmp_path, GOOD))
    result = run_preflight(monkeypatch, roster, facts(instances_limit=10))
    assert result.refused is not None
    assert "not enough instances" in result.refused
    assert [(r.resource, r.need, r.free) for r in result.shortfalls] == [("instances", 15, 7)]
    assert result.per_student == {}


def test_a_missing_image_names_the_students_and_their_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = GOOD.replace("    topology: single\n", "    topology: single\n    image: debian-13\n")
    roster = load_roster(write(tmp_path, text))
    result = run_preflight(monkeypatch, roster, facts(instances_limit=100))
    assert result.refused is None
    assert result.per_student == {
        "cls-a": ["line 10: calculator-lab:image: no image named 'debian-13'; available: debian-12"]
    }


def test_a_class_without_openstack_students_is_not_checked(tmp_path: Path) -> None:
    roster = load_roster(write(tmp_path, "students:\n  - id: cls-a\n"))
    result = class_preflight.run(roster, roster.students, {})
    assert (result.report, result.refused) == (None, None)


# --- runner ----------------------------------------------------------------------------------


def test_a_converged_stack_is_recognised_from_its_last_update() -> None:
    values = {"topology": "client", "flavorByRole": {"front": "m1.small"}, "image": "debian-12"}
    # As a 3.259 engine records them (measured): declared defaults included, maps as JSON.
    recorded = {
        "calculator-lab:topology": "client",
        "calculator-lab:flavorByRole": '{"front":"m1.small"}',
        "calculator-lab:image": "debian-12",
        "calculator-lab:dockerHostPort": "50000",
        "calculator-lab:target": "docker",
        "openstack:cloud": "testcloud",  # not the project's: ignored
    }
    defaults = {"dockerHostPort": 50000, "target": "docker", "image": ""}

    def last(result: str = "succeeded", kind: str = "update", **changed: str) -> Any:
        config = {k: SimpleNamespace(value=v) for k, v in (recorded | changed).items()}
        return SimpleNamespace(kind=kind, result=result, config=config)

    assert runner.is_done(last(), values, defaults)
    assert not runner.is_done(last(result="failed"), values, defaults)
    assert not runner.is_done(last(kind="refresh"), values, defaults)
    assert not runner.is_done(last(**{"calculator-lab:topology": "single"}), values, defaults)
    assert not runner.is_done(last(), values | {"flavor": "m1.small"}, defaults)
    # A key dropped from the roster falls back to its default: a change, so not done.
    assert not runner.is_done(last(), {k: v for k, v in values.items() if k != "image"}, defaults)
    assert not runner.is_done(None, values, defaults)


def fake_roster(tmp_path: Path, count: int) -> Roster:
    entries = "".join(
        f"  - id: cls-{chr(97 + i)}\n    dockerHostPort: {50000 + i}\n" for i in range(count)
    )
    return load_roster(write(tmp_path, "students:\n" + entries))


def test_one_students_failure_never_stops_the_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster = fake_roster(tmp_path, 4)

    def fake_up(ctx: runner.RunContext, student: Any, outcome: Outcome) -> None:
        outcome.start("up")
        if student.id == "cls-b":
            raise RuntimeError("Nova said no\nsecond line")
        outcome.url = f"http://{student.id}"
        outcome.finish("deployed")

    monkeypatch.setitem(runner._OPERATIONS, "up", fake_up)
    report = ClassReport("t", "up", runner.outcomes_for(roster), 2)
    ctx = runner.RunContext(ws=None, existing={})  # type: ignore[arg-type]
    runner.run_class(ctx, "up", roster, report, workers=2, interval=0.01)
    states = {o.student: (o.state, o.error) for o in report.outcomes}
    assert states == {
        "cls-a": ("deployed", None),
        "cls-b": ("failed", "RuntimeError: Nova said no second line"),
        "cls-c": ("deployed", None),
        "cls-d": ("deployed", None),
    }
    assert not report.ok


def test_ctrl_c_starts_no_one_else_and_waits_for_the_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    roster = fake_roster(tmp_path, 4)
    started = threading.Event()
    release = threading.Event()

    def slow_up(ctx: runner.RunContext, student: Any, outcome: Outcome) -> None:
        outcome.start("up")
        started.set()
        release.wait(5)
        # A running `pulumi up` that got the terminal's SIGINT ends cancelled.
        outcome.finish("cancelled" if student.id == "cls-a" else "deployed")

    monkeypatch.setitem(runner._OPERATIONS, "up", slow_up)
    ticks = 0

    def tick() -> None:
        nonlocal ticks
        ticks += 1
        if started.is_set() and ticks < 1000 and not release.is_set():
            release.set()
            raise KeyboardInterrupt

    report = ClassReport("t", "up", runner.outcomes_for(roster), 2)
    ctx = runner.RunContext(ws=None, existing={})  # type: ignore[arg-type]
    runner.run_class(ctx, "up", roster, report, workers=2, tick=tick, interval=0.01)
    states = {o.student: o.state for o in report.outcomes}
    assert states == {
        "cls-a": "cancelled",
        "cls-b": "deployed",
        "cls-c": "not started",
        "cls-d": "not started",
    }
    assert report.interrupted
    assert not report.ok
    assert report.notes == [
        "interrupted (Ctrl-C): no student was started after it",
        "cancelled by Pulumi (operations in flight finished, state saved): cls-a",
        "running at Ctrl-C and finished anyway: cls-b",
        "not started: cls-c, cls-d",
        "run the same command again to converge",
    ]


def test_the_default_workers_never_exceed_the_class() -> None:
    assert commands.default_workers(1) == 1
    assert commands.default_workers(40) == commands.DEFAULT_WORKERS


# --- report ----------------------------------------------------------------------------------


def test_report_as_json_and_csv(tmp_path: Path) -> None:
    ok = Outcome("cls-a", "cls-a", "single", "openstack", action="up", state="deployed")
    ok.url, ok.health = "http://203.0.113.5:50000", "unreachable"
    bad = Outcome("cls-b", "cls-b", "client", "openstack", action="up")
    bad.start("up")
    bad.finish("failed", "error: \x1b[31mno image\x1b[0m\n  named debian-13")
    report = ClassReport("demo", "up", [ok, bad], workers=2)
    write_report(report, tmp_path / "r.json")
    document = json.loads((tmp_path / "r.json").read_text())
    assert (document["class"], document["ok"], document["workers"]) == ("demo", False, 2)
    assert document["students"][0]["url"] == "http://203.0.113.5:50000"
    assert document["students"][1]["error"] == "error: no image named debian-13"
    write_report(report, tmp_path / "r.csv")
    rows = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert [(r["student"], r["state"], r["health"]) for r in rows] == [
        ("cls-a", "deployed", "unreachable"),
        ("cls-b", "failed", ""),
    ]


def test_a_programs_traceback_is_reduced_to_its_exception() -> None:
    message = textwrap.dedent(
        """\
        Program failed with an unhandled exception:
        Traceback (most recent call last):
          File "/x/pulumi-language-python-exec", line 232, in <module>
            loop.run_until_complete(coro)
          File "/x/invoke.py", line 408, in do_rpc
            raise error
        Exception: invoke of openstack:networking/getNetwork:getNetwork failed: 1 error occurred:
        \t* One of 'auth_url' or 'cloud' must be specified
        """
    )
    assert " ".join(runner.essential(message).split()) == (
        "Program failed with an unhandled exception: Exception: invoke of"
        " openstack:networking/getNetwork:getNetwork failed: 1 error occurred:"
        " * One of 'auth_url' or 'cloud' must be specified"
    )
    assert runner.essential("error: no image named 'x'") == "error: no image named 'x'"
