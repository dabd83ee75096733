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

from lab.names import PROJECT

APP_DIR = Path(__file__).resolve().parent.parent / "apps" / "calculator"
INSTALL_DIR = "/opt/calculator-lab"
# Nova refuses user data over 64 KiB once base64-encoded; stay well below.
NOVA_USER_DATA_LIMIT = 65535

_NOT_SHIPPED = {"README.md", "Dockerfile", ".dockerignore"}


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


def render_user_data(
    role: str,
    environment: Mapping[str, str],
    *,
    python: str = "/usr/bin/python3",
    files: tuple[AppFile, ...] | None = None,
) -> str:
    """A `#cloud-config` document that installs and starts one calculator role."""
    files = app_files() if files is None else files
    unit_name = f"calculator-{role}.service"
    archive_path = f"{INSTALL_DIR}/calculator.tar.gz"
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
                "path": f"/etc/systemd/system/{unit_name}",
                "content": systemd_unit(role, environment, python),
                "permissions": "0644",
                "owner": "root:root",
            },
        ],
        "runcmd": [
            ["tar", "-xzf", archive_path, "-C", INSTALL_DIR, "--no-same-owner"],
            ["systemctl", "daemon-reload"],
            ["systemctl", "enable", "--now", unit_name],
        ],
    }
    text = "#cloud-config\n" + str(yaml.safe_dump(document, sort_keys=False, width=1000))
    encoded_size = len(base64.b64encode(text.encode()))
    if encoded_size > NOVA_USER_DATA_LIMIT:
        raise ValueError(
            f"user data for {role} is {encoded_size} bytes base64-encoded, over Nova's limit"
            f" of {NOVA_USER_DATA_LIMIT}: the calculator package has grown too large"
        )
    return text
