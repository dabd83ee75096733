"""The boot layer's marker, registered here as well as in pyproject.toml so that the layer
works with `--strict-markers` wherever it is collected."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "boot: boots the lab's VMs under QEMU on a namespace data plane (root, slow)"
    )
