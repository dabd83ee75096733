"""Cloud-init user data that turns a plain Debian/Ubuntu VM into one calculator service.

The user data carries the calculator package itself (a compressed archive), a systemd unit and the
addresses the front end needs, so a VM needs nothing from the internet at boot: the client
topology's service subnet has no route to it. Pure functions only: the same inputs always
render the same text, so a re-run of `pulumi up` sees no change.
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from lab.names import GUEST_PYTHON_FLOOR, PROJECT

APP_DIR = Path(__file__).resolve().parent.parent / "apps" / "calculator"
INSTALL_DIR = "/opt/calculator-lab"
# Nova refuses user data over 64 KiB once base64-encoded; stay well below.
NOVA_USER_DATA_LIMIT = 65535

_NOT_SHIPPED = {"README.md", "Dockerfile", ".dockerignore"}
#: Images known to have the Python the calculator needs, for the console message's fix.
_IMAGES_WITH_MIN_PYTHON = "Debian 11+, Ubuntu 20.04+"


def console_line_prefix(role: str) -> str:
    """How the one line the user data writes to the serial console about a role begins.

    `lab check` finds it in the console log Nova returns when the role does not answer, so
    the writer (the user data) and the reader (labctl/console.py) share this spelling.
    """
    return f"{PROJECT} {role}: "


@dataclass(frozen=True)
class AppFile:
    relative_path: str  # inside the calculator package, e.g. "server.py"
    content: bytes


def app_files(app_dir: Path | None = None) -> tuple[AppFile, ...]:
    """The calculator's runtime files, in a stable order."""
    app_dir = APP_DIR if app_dir is None else app_dir
    files = []
    for path in sorted(app_dir.rglob("*")):
        relative = path.relative_to(app_dir)
        if (
            path.is_dir()
            or path.name in _NOT_SHIPPED
            or "__pycache__" in relative.parts
            or path.suffix in (".pyc", ".pyo")
        ):
            continue
        files.append(AppFile(relative.as_posix(), path.read_bytes()))
    if not any(f.relative_path == "__main__.py" for f in files):
        raise FileNotFoundError(f"no calculator package found in {app_dir}")
    return tuple(files)


def package_archive(files: tuple[AppFile, ...]) -> bytes:
    """The package as one reproducible .tar.gz: one archive compresses better than file by
    file (Nova's limit is tight), and fixed times and owners make it byte-identical on every
    run, which keeps `pulumi up` free of spurious changes."""
    buffer = io.BytesIO()
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=9) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.USTAR_FORMAT) as archive,
    ):
        for app_file in files:
            info = tarfile.TarInfo(f"calculator/{app_file.relative_path}")
            info.size = len(app_file.content)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(app_file.content))
    return buffer.getvalue()


def systemd_unit(role: str, environment: Mapping[str, str], python: str) -> str:
    env_lines = "".join(
        f"Environment={key}={value}\n" for key, value in sorted(environment.items())
    )
    return (
        "[Unit]\n"
        f"Description=calculator-lab {role} service\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n"
        "\n"
        "[Service]\n"
        f"Environment=PYTHONPATH={INSTALL_DIR}\n"
        f"{env_lines}"
        f"ExecStart={python} -m calculator {role}\n"
        # A throwaway unprivileged user and a read-only system: the service only needs a socket.
        "DynamicUser=yes\n"
        "ProtectSystem=strict\n"
        "ProtectHome=yes\n"
        "PrivateTmp=yes\n"
        "NoNewPrivileges=yes\n"
        "Restart=on-failure\n"
        "RestartSec=2\n"
        "\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def start_script(role: str, environment: Mapping[str, str], python: str) -> str:
    """A POSIX sh script that checks what the service needs before starting it, and writes one
    line to the console either way: `calculator-lab <role>: cannot start: <what>; <fix>` or
    `calculator-lab <role>: serving on :<port>`. The console is the serial port on Nova (the
    kernel's last console=), whose log is what `openstack console log show` and `lab check`
    read; without these lines a VM that cannot run the calculator is silent there. Only
    where there is no /dev/console (a container) does the line go to stdout, that is to
    cloud-init-output.log.

    POSIX sh, and no systemd in the checks themselves: they must run, and say what is wrong,
    on the images they reject (Alpine's busybox sh, an image without systemd). Terse, without
    comments: it travels gzipped in the user data, where every byte counts against Nova's
    limit. "Up" means listening: the unit is active as soon as python starts, before it binds.
    """
    unit = unit_name(role)
    port = environment.get("CALC_PORT", "")
    host = environment.get("CALC_LISTEN_HOST", "")
    probe_host = "127.0.0.1" if host in ("", "0.0.0.0") else host  # noqa: S104
    minimum = ".".join(map(str, GUEST_PYTHON_FLOOR))
    fix = f"use an image with Python {minimum}+ ({_IMAGES_WITH_MIN_PYTHON}): lab image upload"
    probe = f"import socket; socket.create_connection(('{probe_host}', {port}), 2).close()"
    lines = [
        "#!/bin/sh",
        f"py={_sh_quote(python)} unit={unit}",
        f"need='the calculator needs Python {minimum} or newer'",
        f"fix={_sh_quote(fix)}",
        f"p={_sh_quote(console_line_prefix(role))}",
        'say() { l="$p$*"; { echo "$l" >/dev/console; } 2>/dev/null || echo "$l"; }',
        'if [ ! -x "$py" ]; then say "cannot start: no python3 at $py, $need; $fix"; exit 1; fi',
        # "3.9 True": a version and a verdict that only a Python prints (not /bin/true).
        'v=$("$py" -c \'import sys; v = sys.version_info;'
        f' print("%d.%d %s" % (v[0], v[1], v >= {GUEST_PYTHON_FLOOR!r}))\' 2>/dev/null)',
        'case "$v" in *" True") ;; *)',
        '  if [ -n "$v" ]; then v=${v%% *}; else v="not a Python"; fi',
        '  say "cannot start: python3 at $py is $v, $need; $fix"; exit 1;;',
        "esac",
        "if [ ! -d /run/systemd/system ]; then",
        '  say "cannot start: systemd is not the init system (the calculator is a systemd unit);'
        ' use an image with systemd (Debian, Ubuntu): lab image upload"; exit 1',
        "fi",
        f"tar -xzf {INSTALL_DIR}/calculator.tar.gz -C {INSTALL_DIR} --no-same-owner"
        f' || {{ say "cannot start: unpacking {INSTALL_DIR}/calculator.tar.gz failed"; exit 1; }}',
        'systemctl daemon-reload && systemctl enable --now "$unit"'
        ' || { say "cannot start: systemctl enable --now $unit failed;'
        ' see journalctl -u $unit"; exit 1; }',
        "i=0",
        "while [ $i -lt 60 ]; do",
        f'  if "$py" -c "{probe}" 2>/dev/null; then say "serving on :{port}"; exit 0; fi',
        "  i=$((i + 1)); sleep 1",
        "done",
        f'say "cannot start: $unit is not listening on :{port} after 60 s;'
        ' see journalctl -u $unit"',
        "exit 1",
    ]
    return "\n".join(lines) + "\n"


def unit_name(role: str) -> str:
    """The role's systemd unit, which the start script enables and its message names."""
    return f"calculator-{role}.service"


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\\''") + "'"


def render_user_data(
    role: str,
    environment: Mapping[str, str],
    *,
    python: str = "/usr/bin/python3",
    files: tuple[AppFile, ...] | None = None,
) -> str:
    """A `#cloud-config` document that installs and starts one calculator role."""
    files = app_files() if files is None else files
    unit = unit_name(role)
    archive_path = f"{INSTALL_DIR}/calculator.tar.gz"
    script_path = f"{INSTALL_DIR}/start-{role}"
    document = {
        "write_files": [
            {
                "path": archive_path,
                "encoding": "b64",
                "content": base64.b64encode(package_archive(files)).decode("ascii"),
                "permissions": "0644",
                "owner": "root:root",
            },
            {
                "path": f"/etc/systemd/system/{unit}",
                "content": systemd_unit(role, environment, python),
                "permissions": "0644",
                "owner": "root:root",
            },
            {
                "path": script_path,
                "encoding": "gz+b64",
                "content": base64.b64encode(
                    gzip.compress(start_script(role, environment, python).encode(), 9, mtime=0)
                ).decode("ascii"),
                "permissions": "0755",
                "owner": "root:root",
            },
        ],
        # Through sh: some images mount cloud-init's and other paths noexec.
        "runcmd": [["sh", script_path]],
    }
    text = "#cloud-config\n" + str(yaml.safe_dump(document, sort_keys=False, width=1000))
    encoded_size = len(base64.b64encode(text.encode()))
    if encoded_size > NOVA_USER_DATA_LIMIT:
        raise ValueError(
            f"user data for {role} is {encoded_size} bytes base64-encoded, over Nova's limit"
            f" of {NOVA_USER_DATA_LIMIT}: the calculator package has grown too large"
        )
    return text
