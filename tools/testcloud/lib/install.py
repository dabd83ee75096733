"""apt packages, the OpenStack virtualenv, our ML2 driver, and the clients put on PATH."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .core import CONSTRAINTS, DRIVER_SRC, Layout, TestcloudError, file_digest, run_logged, say

APT_PACKAGES = ("mariadb-server", "rabbitmq-server", "python3-venv")
PIP_PACKAGES = (
    "keystone",
    "neutron",
    "nova",
    "openstack-placement",
    "glance",
    "python-openstackclient",
    "osc-placement",
    "openstacksdk",
    "PyMySQL",
    "pyuwsgi",
)
# Linked into Layout.client_bin, which `testcloud env` puts first on PATH.
CLIENTS = ("openstack",)


def apt_missing() -> list[str]:
    wanted = {
        "mariadb-server": Path("/usr/sbin/mariadbd"),
        "rabbitmq-server": Path("/usr/lib/rabbitmq/bin/rabbitmq-server"),
    }
    missing = [pkg for pkg, probe in wanted.items() if not probe.exists()]
    venv_ok = subprocess.run(
        ["/usr/bin/python3", "-c", "import ensurepip, venv"], capture_output=True, check=False
    )
    if venv_ok.returncode != 0:
        missing.append("python3-venv")
    return missing


def install(lay: Layout) -> None:
    missing = apt_missing()
    if missing:
        if os.geteuid() != 0:
            raise TestcloudError(f"need root to apt-get install {' '.join(missing)}")
        say(f"apt-get install {' '.join(APT_PACKAGES)}")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run_logged(["apt-get", "update", "-qq"], lay.logfile("install"), env)
        run_logged(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *APT_PACKAGES],
            lay.logfile("install"),
            env,
        )

    stamp = lay.venv / ".calclab-stamp"
    wanted = file_digest(CONSTRAINTS) + "|" + ",".join(PIP_PACKAGES)
    if not stamp.exists() or stamp.read_text() != wanted:
        say("installing OpenStack into the virtualenv (about a minute and a half when cold)")
        if not (lay.bin / "python").exists():
            run_logged(["/usr/bin/python3", "-m", "venv", lay.venv], lay.logfile("install"))
        pip_env = dict(os.environ, PIP_CACHE_DIR=str(lay.root / "pip-cache"))
        run_logged(
            [
                "nice",
                lay.bin / "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "-c",
                CONSTRAINTS,
                *PIP_PACKAGES,
            ],
            lay.logfile("install"),
            pip_env,
        )
        stamp.write_text(wanted)

    driver_stamp = lay.venv / ".calclab-ml2-stamp"
    driver_digest = file_digest(DRIVER_SRC)
    if not driver_stamp.exists() or driver_stamp.read_text() != driver_digest:
        say("installing the calclab_ml2 mechanism driver")
        # Build from a scratch copy: setuptools writes build/ and *.egg-info next to the
        # sources, and the checkout must stay clean.
        scratch = lay.root / "build" / "calclab_ml2"
        shutil.rmtree(scratch, ignore_errors=True)
        shutil.copytree(DRIVER_SRC, scratch, ignore=shutil.ignore_patterns("__pycache__"))
        run_logged(
            [
                lay.bin / "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                "--force-reinstall",
                "--no-deps",
                scratch,
            ],
            lay.logfile("install"),
        )
        driver_stamp.write_text(driver_digest)

    link_clients(lay)


def link_clients(lay: Layout) -> None:
    """The clients alone, so that PATH does not also pick up the virtualenv's python."""
    lay.client_bin.mkdir(parents=True, exist_ok=True)
    for name in CLIENTS:
        link = lay.client_bin / name
        if not link.is_symlink() or link.readlink() != lay.bin / name:
            link.unlink(missing_ok=True)
            link.symlink_to(lay.bin / name)
