"""`lab check`'s reading of a failing VM's console log: the user data's line among a Debian
boot's messages, the tail when there is none, which VMs to read, and a log that cannot be read.
Nova's real console API is exercised by tests/testcloud/test_check_console.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from lab.cloud_init import console_line_prefix
from lab.names import ROLES, physical_name
from labctl.check import Row, check, failing_roles
from labctl.console import (
    CONSOLE_TAIL,
    ConsoleNote,
    console_notes,
    read_console,
    render_consoles,
    server_names,
)
from tests.apps.calc_cluster import free_port

TOO_OLD = (
    "cannot start: python3 at /usr/bin/python3 is 3.7, the calculator needs 3.8 or newer;"
    " use an image with Python 3.8+ (Debian 11+, Ubuntu 20.04+): lab image upload"
)

# A Debian cloud image's serial console as Nova returns it: kernel messages with timestamps,
# systemd's coloured status column, cloud-init's own lines (prefixed when they reach the
# console through the journal), and the login prompt at the end.
DEBIAN_BOOT = (
    "[    0.000000] Linux version 6.1.0-28-cloud-amd64 (debian-kernel@lists.debian.org)\r\n"
    "[    0.000000] Command line: BOOT_IMAGE=/vmlinuz-6.1.0-28-cloud-amd64 root=/dev/vda1 ro"
    " console=tty0 console=ttyS0,115200n8\r\n"
    "[    1.912345] EXT4-fs (vda1): mounted filesystem with ordered data mode.\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39msystemd-journald.service\x1b[0m"
    " - Journal Service.\r\n"
    "[    6.204417] cloud-init[402]: Cloud-init v. 22.4.2 running 'init' at Tue, 03 Dec 2024"
    " 10:01:02 +0000. Up 6.11 seconds.\r\n"
    "[    6.301122] cloud-init[402]: ci-info: ++++++++++++++Net device info++++++++++++++\r\n"
    "[    6.301990] cloud-init[402]: ci-info: | ens3 | True | 192.168.2.11 | 255.255.255.0 |\r\n"
    "[\x1b[0;32m  OK  \x1b[0m] Started \x1b[0;1;39mcalculator-sum.service\x1b[0m"
    " - calculator-lab sum service.\r\n"
    "{marker}"
    "[   14.902331] cloud-init[611]: Cloud-init v. 22.4.2 finished at Tue, 03 Dec 2024"
    " 10:01:11 +0000. Datasource DataSourceOpenStackLocal. Up 14.88 seconds\r\n"
    "\r\n"
    "Debian GNU/Linux 12 debian ttyS0\r\n"
    "\r\n"
    "debian login: "
)


def test_the_prefix_is_the_projects_name_and_the_role() -> None:
    assert console_line_prefix("sum") == "calculator-lab sum: "


def test_the_user_data_line_is_found_among_the_boot_messages() -> None:
    log = DEBIAN_BOOT.format(marker=f"calculator-lab sum: {TOO_OLD}\r\n")
    assert read_console("sum", "alice-sum", log) == ConsoleNote(
        "sum", "alice-sum", line=f"calculator-lab sum: {TOO_OLD}"
    )


def test_the_line_is_found_behind_cloud_inits_prefix_and_the_last_one_wins() -> None:
    log = DEBIAN_BOOT.format(
        marker="[   13.1] cloud-init[611]: calculator-lab front: waiting for the network\r\n"
        f"[   14.2] cloud-init[611]: calculator-lab front: {TOO_OLD}\r\n"
    )
    note = read_console("front", "bob-front", log)
    assert note.line == f"calculator-lab front: {TOO_OLD}"
    assert note.tail == ()


def test_systemds_unit_description_is_not_the_line() -> None:
    """'calculator-lab sum service.' (the unit's Description) names the role without ': '."""
    note = read_console("sum", "alice-sum", DEBIAN_BOOT.format(marker=""))
    assert note.line is None
    assert note.tail[-1] == "debian login:"


def test_without_the_line_the_last_lines_are_shown_without_colour_codes() -> None:
    # another role's line is not this role's
    log = DEBIAN_BOOT.format(marker="calculator-lab front: started\r\n")
    note = read_console("sum", "alice-sum", log)
    assert note.line is None
    assert len(note.tail) == CONSOLE_TAIL
    assert note.tail[0].endswith("EXT4-fs (vda1): mounted filesystem with ordered data mode.")
    assert note.tail[1] == "[  OK  ] Started systemd-journald.service - Journal Service."
    assert "calculator-lab front: started" in note.tail
    assert all("\x1b" not in line and "\r" not in line and line for line in note.tail)


def test_a_short_log_is_shown_whole_and_an_empty_one_says_so() -> None:
    # What Nova's fake driver answers for every server.
    note = read_console("front", "x-front", "FAKE CONSOLE OUTPUT\nANOTHER\nLAST LINE")
    assert note.tail == ("FAKE CONSOLE OUTPUT", "ANOTHER", "LAST LINE")
    assert render_consoles([read_console("div", "x-div", "")]) == [
        "[bold]div[/bold] (x-div) console: empty"
    ]


def test_only_the_vms_that_do_not_answer_are_read() -> None:
    unreachable = [Row("front", False, "no answer at http://203.0.113.5:50000: timed out")]
    assert failing_roles(unreachable) == ["front"]
    degraded = [
        Row("front", True, "answers (degraded)"),
        Row("sum", True, "ok"),
        Row("sub", False, "down at http://192.168.2.12:50002"),
        Row("div", False, "down at http://192.168.2.14:50004"),
        Row("(5+6)*2", False, "HTTP 502"),
    ]
    assert failing_roles(degraded) == ["sub", "div"]


def outputs_of(student: str, target: str = "openstack") -> dict[str, object]:
    return {
        "calculatorUrl": "http://203.0.113.5:50000",
        "target": target,
        "privateIps": {
            physical_name(student, role): f"10.0.2.{10 + i}" for i, role in enumerate(ROLES)
        },
    }


def test_server_names_come_from_the_stacks_outputs() -> None:
    # a student id that itself contains a role's name and dashes
    outputs = outputs_of("sum-group-2")
    assert server_names(outputs, ["front", "div"]) == {
        "front": "sum-group-2-front",
        "div": "sum-group-2-div",
    }
    assert server_names(outputs_of("dev", target="docker"), ["front"]) == {}
    assert server_names({"target": "openstack"}, ["front"]) == {}


def test_notes_render_one_line_each_or_the_tail() -> None:
    notes = [
        ConsoleNote("sum", "a-sum", line=f"calculator-lab sum: {TOO_OLD}"),
        ConsoleNote("div", "a-div", error="the server is gone (404)"),
        ConsoleNote("front", "a-front", tail=("[x] ok", "login:")),
    ]
    assert render_consoles(notes) == [
        f"[bold]sum[/bold] (a-sum) console: calculator-lab sum: {TOO_OLD}",
        "[bold]div[/bold] (a-div) console: the server is gone (404)",
        "[bold]front[/bold] (a-front) console: no calculator line yet; its last 2 lines:",
        "    \\[x] ok",  # escaped: rich would take [x] for markup
        "    login:",
    ]


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OS_CLOUD", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("no_credentials")
def test_without_credentials_each_vm_gets_one_line_saying_so() -> None:
    notes = console_notes({"front": "a-front", "sum": "a-sum"})
    assert [(n.role, n.server) for n in notes] == [("front", "a-front"), ("sum", "a-sum")]
    assert all(
        n.error is not None and n.error.startswith("console log not read: no OpenStack credentials")
        for n in notes
    )


@pytest.mark.usefixtures("no_credentials")
def test_the_command_keeps_its_report_when_the_console_cannot_be_read(tmp_path: Path) -> None:
    outputs = outputs_of("carol")
    outputs["calculatorUrl"] = f"http://127.0.0.1:{free_port()}"  # nothing listens
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(outputs))
    app = typer.Typer()
    app.command()(check)
    app.command("noop")(lambda: None)
    result = CliRunner().invoke(
        app, ["check", "--outputs-file", str(path), "--timeout", "0"], terminal_width=400
    )
    assert result.exit_code == 1, result.output
    assert "front (carol-front) console: console log not read: no OpenStack credentials" in (
        result.stdout
    )
    assert "UNREACHABLE" in result.stdout
    reported = CliRunner().invoke(
        app, ["check", "--outputs-file", str(path), "--timeout", "0", "--json"]
    )
    consoles = json.loads(reported.stdout)["consoles"]
    assert [(c["role"], c["server"]) for c in consoles] == [("front", "carol-front")]
