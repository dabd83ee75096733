"""Connections to the local OpenStack of tools/testcloud, or a skip when it is not running.

`tools/testcloud/testcloud env` exports OS_CLIENT_CONFIG_FILE, OS_CLOUD and CALCLAB_TESTCLOUD.
With CALCLAB_TESTCLOUD set the caller has promised a running cloud, so an unreachable
Keystone fails the tests instead of skipping them; without it the default clouds.yaml under
the cache is used if Keystone answers, and the tests are skipped otherwise.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openstack
import pytest

from labctl.paths import cache_dir

KEYSTONE = "http://127.0.0.1:5000/v3"
START_HINT = (
    "start it with: tools/testcloud/testcloud start && eval $(tools/testcloud/testcloud env)"
)


def _clouds_yaml() -> Path:
    explicit = os.environ.get("OS_CLIENT_CONFIG_FILE")
    if explicit:
        return Path(explicit)
    return cache_dir() / "testcloud" / "clouds.yaml"


def _keystone_answers() -> bool:
    try:
        with urllib.request.urlopen(KEYSTONE, timeout=5) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="session")
def clouds_yaml() -> Path:
    path = _clouds_yaml()
    problem = None
    if not path.is_file():
        problem = f"testcloud has never been started here ({path} missing)"
    elif not _keystone_answers():
        problem = f"testcloud is not running (no Keystone at {KEYSTONE})"
    if problem is not None:
        if os.environ.get("CALCLAB_TESTCLOUD"):
            pytest.fail(f"{problem}, but CALCLAB_TESTCLOUD is set; {START_HINT}")
        pytest.skip(f"{problem}; {START_HINT}")
    return path


def _connect(clouds_yaml: Path, cloud: str) -> Any:
    config = openstack.config.OpenStackConfig(config_files=[str(clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud=cloud))


@pytest.fixture(scope="session")
def member(clouds_yaml: Path) -> Iterator[Any]:
    """The student: a member (not admin) of the calculator-lab project."""
    conn = _connect(clouds_yaml, os.environ.get("OS_CLOUD", "testcloud"))
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def admin(clouds_yaml: Path) -> Iterator[Any]:
    """For checks a member may not make (e.g. reading a server's user data)."""
    conn = _connect(clouds_yaml, "testcloud-admin")
    yield conn
    conn.close()
