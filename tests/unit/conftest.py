"""Shared fixtures for the fast unit layer (no engine, no cloud, no Docker)."""

from __future__ import annotations

from typing import Any

import pytest

OPENSTACK_BASE: dict[str, Any] = {
    "target": "openstack",
    "externalNetwork": "public",
    "image": "debian-12",
    "flavor": "m1.tiny",
}


@pytest.fixture
def openstack_config() -> dict[str, Any]:
    """A minimal valid OpenStack configuration; tests add or override keys."""
    return dict(OPENSTACK_BASE)
