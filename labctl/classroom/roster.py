"""A class roster: one YAML file, one entry per student, validated by the stack files' model.

    class: cloud-2026-a            # optional; names the class in reports (default: file name)
    ends: 2027-01-15T18:00 Europe/Paris   # optional; `lab class reap` destroys it after that
    defaults:                      # any stack-file key, for every student
      target: openstack
      externalNetwork: public
      image: debian-12
      flavor: m1.tiny
    students:
      - id: alice                  # the student id: the stack name and every physical name
        topology: single
        sshPublicKey: ssh-ed25519 AAAA... alice@insa
      - id: bob
        topology: client
        flavorByRole: {front: m1.small}

Each entry is the class defaults overlaid with the entry's own keys, validated by
`lab.config.load_config` exactly as a stack file is. Every problem of the file is reported at
once with the line it is on, read from the YAML nodes' marks (a plain `safe_load` loses them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from lab.config import ConfigError, LabConfig, load_config
from lab.names import config_key
from labctl.classroom.schedule import EndError, parse_end

TOP_LEVEL_KEYS = ("class", "ends", "defaults", "students")
# Keys of an entry that are not stack-file keys. `student` is spelled `id` in a roster.
ENTRY_ID = "id"


class RosterError(ValueError):
    """A roster with problems; `problems` holds every one, each `FILE:LINE: text`."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__(f"{path}: invalid class roster:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Student:
    """One validated roster entry."""

    id: str
    config: LabConfig
    values: dict[str, Any]  # the merged stack-file values (keys without the project prefix)
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)  # where each value was set

    def line_of(self, key: str) -> int:
        """The line that sets `key` (`image`, `flavorByRole.front`...) for this student."""
        return self.key_lines.get(key.split(".", 1)[0], self.line)

    @property
    def stack(self) -> str:
        # One stack per student, named by the id: `lab up`'s stacks and a class's share names.
        return self.id


@dataclass(frozen=True)
class Roster:
    path: Path
    name: str
    students: tuple[Student, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    ends: datetime | None = None  # when the class ends (zone-aware); None: it does not say

    def select(self, ids: Iterable[str]) -> Roster:
        """The same class restricted to some students (`--only`)."""
        wanted = set(ids)
        unknown = wanted - {s.id for s in self.students}
        if unknown:
            raise RosterError(
                self.path, [f"no student {i!r} in the roster" for i in sorted(unknown)]
            )
        kept = tuple(s for s in self.students if s.id in wanted)
        return Roster(self.path, self.name, kept, self.defaults, self.ends)


# --- reading ---------------------------------------------------------------------------------


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Collector:
    """Problems gathered while walking the file, each with its line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._items: list[tuple[int, str]] = []

    def add(self, line: int, text: str) -> None:
        if (line, text) not in self._items:
            self._items.append((line, text))

    def raise_if_any(self) -> None:
        if self._items:
            ordered = sorted(self._items, key=lambda item: item[0])
            raise RosterError(self.path, [f"{self.path.name}:{ln}: {text}" for ln, text in ordered])


@dataclass
class _Mapping:
    """A YAML mapping node with each key's node and value, in file order."""

    node: yaml.MappingNode
    keys: dict[str, yaml.Node] = field(default_factory=dict)
    values: dict[str, yaml.Node] = field(default_factory=dict)


def _mapping(node: yaml.Node, what: str, problems: _Collector) -> _Mapping | None:
    if not isinstance(node, yaml.MappingNode):
        problems.add(_line(node), f"{what} must be a map of keys to values")
        return None
    result = _Mapping(node)
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):
            problems.add(_line(key_node), f"{what}: keys must be plain names")
            continue
        key = str(key_node.value)
        if key in result.keys:
            first = _line(result.keys[key])
            problems.add(_line(key_node), f"{what}: duplicate key '{key}' (first on line {first})")
            continue
        result.keys[key] = key_node
        result.values[key] = value_node
    return result


def _python(node: yaml.Node) -> Any:
    """A node's value as `yaml.safe_load` would give it."""
    return yaml.SafeLoader(yaml.serialize(node)).get_single_data()


_PROBLEM = re.compile(rf"^\s*{re.escape(config_key(''))}([A-Za-z0-9_.]+): (.*)$")
# The model's hints speak of `pulumi config`; in a roster the fix is an edit of the file.
_CONFIG_HINT = re.compile(r" \(pulumi config rm [^)]*\)|; it defaults to the stack name.*$")


def _config_problems(err: ConfigError) -> list[tuple[str, str]]:
    """(key, message) for each problem of a ConfigError, the key as typed in a roster."""
    found: list[tuple[str, str]] = []
    for text in str(err).splitlines()[1:]:
        match = _PROBLEM.match(text)
        if match is None:
            found.append(("", text.strip()))
            continue
        key, message = match.group(1), _CONFIG_HINT.sub("", match.group(2))
        found.append((key, message))
    return found


def load_roster(path: Path) -> Roster:
    """Read and validate a roster; RosterError lists every problem with its line."""
    problems = _Collector(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise RosterError(path, [f"{path}: cannot read ({err.strerror})"]) from None
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise RosterError(path, [f"{path.name}:{line}: not valid YAML: {err.problem}"]) from None
    if document is None:
        raise RosterError(path, [f"{path.name}:1: empty roster; write one with: lab class init"])
    top = _mapping(document, "the roster", problems)
    if top is None:
        problems.raise_if_any()
        raise AssertionError("unreachable")  # pragma: no cover
    for key, key_node in top.keys.items():
        if key not in TOP_LEVEL_KEYS:
            problems.add(_line(key_node), f"unknown key '{key}' (a roster has {TOP_LEVEL_KEYS})")

    name = path.stem
    if "class" in top.values:
        value = _python(top.values["class"])
        if isinstance(value, str) and value:
            name = value
        else:
            problems.add(_line(top.values["class"]), "class: expected the class's name")

    ends = _ends(top.values["ends"], problems) if "ends" in top.values else None

    defaults = _Mapping(yaml.MappingNode("tag:yaml.org,2002:map", []))
    if "defaults" in top.values:
        defaults = _mapping(top.values["defaults"], "defaults", problems) or defaults
    for key in ("student", ENTRY_ID):
        if key in defaults.keys:
            problems.add(_line(defaults.keys[key]), f"defaults: '{key}' is per student")
    default_values = {
        k: _python(v) for k, v in defaults.values.items() if k not in ("student", ENTRY_ID)
    }

    students: list[Student] = []
    if "students" not in top.values:
        problems.add(_line(document), "no 'students' list (one entry per student: - id: alice)")
    elif not isinstance(top.values["students"], yaml.SequenceNode):
        problems.add(_line(top.values["students"]), "students: expected a list of entries")
    else:
        students = _students(top.values["students"], defaults, default_values, problems)
        if not students and not top.values["students"].value:
            problems.add(_line(top.values["students"]), "students: the list is empty")
    problems.raise_if_any()
    return Roster(path, name, tuple(students), default_values, ends)


def _ends(node: yaml.Node, problems: _Collector) -> datetime | None:
    # The text as written, not YAML's reading of it: YAML turns some forms into timestamps
    # (naive ones among them) and leaves others strings.
    if not isinstance(node, yaml.ScalarNode) or not str(node.value).strip():
        problems.add(_line(node), "ends: expected a date and time with its zone")
        return None
    try:
        return parse_end(str(node.value))
    except EndError as err:
        problems.add(_line(node), f"ends: {err}")
        return None


def _students(
    sequence: yaml.SequenceNode,
    defaults: _Mapping,
    default_values: dict[str, Any],
    problems: _Collector,
) -> list[Student]:
    students: list[Student] = []
    seen: dict[str, int] = {}
    # A problem caused by a class default is reported once, on the default's line.
    from_defaults: dict[tuple[int, str], list[str]] = defaultdict(list)
    for item in sequence.value:
        entry = _mapping(item, "student entry", problems)
        if entry is None:
            continue
        line = _line(item)
        if ENTRY_ID not in entry.values:
            problems.add(line, "student entry has no 'id'")
            continue
        student_id = _python(entry.values[ENTRY_ID])
        id_line = _line(entry.values[ENTRY_ID])
        if not isinstance(student_id, str) or not student_id:
            problems.add(id_line, "id: expected the student's id, e.g. alice")
            continue
        if student_id in seen:
            problems.add(id_line, f"id: '{student_id}' is already on line {seen[student_id]}")
            continue
        seen[student_id] = id_line
        if "student" in entry.keys:
            problems.add(_line(entry.keys["student"]), "'student' is spelled 'id' in a roster")
        own = {k: _python(v) for k, v in entry.values.items() if k not in (ENTRY_ID, "student")}
        values = {**default_values, **own, "student": student_id}
        try:
            config = load_config(values, student_id)
        except ConfigError as err:
            for key, message in _config_problems(err):
                text = f"student {student_id}: {config_key(key)}: {message}" if key else message
                base = key.split(".", 1)[0]
                if base == "student":
                    problems.add(id_line, f"id: {message}")
                elif base in entry.keys:
                    problems.add(_line(entry.keys[base]), text)
                elif base in defaults.keys:
                    shared = f"defaults: {config_key(key)}: {message}"
                    from_defaults[(_line(defaults.keys[base]), shared)].append(student_id)
                else:
                    problems.add(line, text)
            continue
        key_lines = {k: _line(n) for k, n in defaults.keys.items()}
        key_lines |= {k: _line(n) for k, n in entry.keys.items() if k != ENTRY_ID}
        key_lines["student"] = id_line
        students.append(Student(student_id, config, values, line, key_lines))
    for (line, text), ids in from_defaults.items():
        problems.add(line, f"{text} (students {', '.join(ids)})")
    _docker_ports(students, problems)
    return students


def _docker_ports(students: Sequence[Student], problems: _Collector) -> None:
    # Docker students of one class share the host: each needs its own published port.
    taken: dict[tuple[str, int], str] = {}
    for student in students:
        if student.config.target != "docker":
            continue
        where = (str(student.config.docker_host_address), student.config.docker_host_port)
        if where in taken:
            problems.add(
                student.line,
                f"student {student.id}: {config_key('dockerHostPort')}: {where[1]} is already "
                f"{taken[where]}'s; give each Docker student its own port",
            )
        taken[where] = student.id


# --- writing ---------------------------------------------------------------------------------

EXAMPLE_DEFAULTS: dict[str, Any] = {
    "target": "openstack",
    "externalNetwork": "public",
    "image": "debian-12",
    "flavor": "m1.tiny",
}


def read_ids(spec: str | None, ids_file: Path | None) -> list[str]:
    """Student ids from `--ids a,b,c` and/or a plain text file (one per line, # comments)."""
    ids: list[str] = []
    if spec:
        ids += [part.strip() for part in spec.split(",") if part.strip()]
    if ids_file is not None:
        for raw in ids_file.read_text().splitlines():
            text = raw.split("#", 1)[0].strip()
            if text:
                ids.append(text)
    return ids


def write_roster(
    path: Path,
    ids: Sequence[str],
    *,
    topology: str = "single",
    defaults: Mapping[str, Any] | None = None,
    class_name: str | None = None,
) -> Roster:
    """Write a roster for `ids` and validate it; nothing is written if it would be invalid."""
    if path.exists():
        raise RosterError(path, [f"{path} exists already; edit it instead"])
    chosen = dict(EXAMPLE_DEFAULTS if defaults is None else defaults)
    document: dict[str, Any] = {}
    if class_name:
        document["class"] = class_name
    document["defaults"] = chosen
    document["students"] = [{"id": i, "topology": topology} for i in ids]
    header = (
        "# Class roster (written by `lab class init`): one entry per student.\n"
        "# An entry takes any stack-file key (topology, keyPair or sshPublicKey, image, flavor,\n"
        "# imageByRole, flavorByRole, target, ...) over the class defaults. See docs/class.md.\n"
    )
    text = header + yaml.safe_dump(document, sort_keys=False)
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(text)
    try:
        roster = load_roster(staged)
    except RosterError as err:
        staged.unlink()
        raise RosterError(path, [p.replace(staged.name, path.name) for p in err.problems]) from None
    staged.rename(path)
    return Roster(path, roster.name, roster.students, roster.defaults, roster.ends)
