"""`pulumi preview` of every OpenStack stack file, offline, through the real engine and provider.

No cloud is contacted: the test gives the external network's id (the shipped files look it up
by name, which needs a cloud), the provider's delayed authentication logs in only on the first
API call, which a preview of new resources never makes, and the program's preflight finds no
cloud answering at the auth URL, so it warns and checks nothing (what docs/first-up.md calls
the offline preview). The provider still validates every property against its schema.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from .conftest import DUMMY_OPENSTACK, POLICY_PACK, Pulumi, Toolchain
from .repo_program import copy_program, openstack_stacks, stack_config

pytestmark = pytest.mark.engine

# Resources a preview must create, by type, for each topology (keypair counted separately).
EXPECTED = {
    "single": {
        "Network": 1,
        "Subnet": 1,
        "Router": 1,
        "RouterInterface": 1,
        "Port": 6,
        "SecGroup": 5,
        "Instance": 5,
        "FloatingIp": 1,
        "FloatingIpAssociate": 1,
    },
    "client": {
        "Network": 2,
        "Subnet": 2,
        "SubnetRoute": 1,
        "Router": 2,
        "RouterInterface": 3,
        "RouterRoute": 1,
        "Port": 8,
        "SecGroup": 5,
        "Instance": 5,
        "FloatingIp": 1,
        "FloatingIpAssociate": 1,
    },
}


# Where nothing listens (port 9, discard): the test cloud's Keystone may run during these tests,
# and dummy credentials sent there would be refused rather than go unanswered. OS_CLOUD is
# emptied: CI exports the test cloud's (testcloud env), which would make the preview online.
OFFLINE = DUMMY_OPENSTACK | {"OS_AUTH_URL": "http://127.0.0.1:9/v3", "OS_CLOUD": ""}
EXTERNAL_NETWORK_ID = "00000000-0000-4000-8000-000000000001"


def _init_offline_stack(
    stack: str, toolchain: Toolchain, pulumi_cli: Pulumi, tmp_path: Path
) -> Path:
    """A copy of the program with the repository's `stack` initialised on the test's backend,
    and the dummy OpenStack credentials a preview needs."""
    toolchain.require("openstack")
    workdir = copy_program(tmp_path / "program", (stack,))
    # The shipped files carry the salt of the empty passphrase (scripts/pulumi-env's).
    pulumi_cli.extra_env.update(OFFLINE | {"PULUMI_CONFIG_PASSPHRASE": ""})
    pulumi_cli("stack", "init", stack, cwd=workdir, check=True)
    pulumi_cli(
        "config",
        "set",
        "calculator-lab:externalNetworkId",
        EXTERNAL_NETWORK_ID,
        "--stack",
        stack,
        cwd=workdir,
        check=True,
    )
    return workdir


@pytest.mark.parametrize("stack", openstack_stacks())
def test_preview_of_the_stack_file_creates_the_lab(
    stack: str, toolchain: Toolchain, pulumi_cli: Pulumi, tmp_path: Path
) -> None:
    workdir = _init_offline_stack(stack, toolchain, pulumi_cli, tmp_path)

    started = time.monotonic()
    result = pulumi_cli("preview", "--json", "--stack", stack, cwd=workdir)
    seconds = time.monotonic() - started
    assert result.code == 0, result.describe()
    steps = json.loads(result.stdout)["steps"]
    assert {step["op"] for step in steps} == {"create"}
    assert "Previewing offline" in result.stderr + json.dumps(json.loads(result.stdout))
    # A URN's type part is "parent$...$type"; the resource's own type is the last one.
    types = [step["urn"].split("::")[2].rsplit("$", 1)[-1] for step in steps]
    created = Counter(t.rsplit(":", 1)[1] for t in types if t.startswith("openstack:"))
    config = stack_config(stack)
    expected = dict(EXPECTED[str(config["topology"])])
    if config.get("sshPublicKey"):
        expected["Keypair"] = 1
    rules = created.pop("SecGroupRule")
    assert dict(created) == expected
    assert rules >= 10
    print(f"\npreview of {stack}: {seconds:.1f}s, {len(steps)} steps")


@pytest.mark.parametrize("stack", openstack_stacks())
def test_the_stack_file_passes_the_policy_pack(
    stack: str, toolchain: Toolchain, pulumi_cli: Pulumi, tmp_path: Path
) -> None:
    workdir = _init_offline_stack(stack, toolchain, pulumi_cli, tmp_path)
    result = pulumi_cli("preview", "--stack", stack, "--policy-pack", str(POLICY_PACK), cwd=workdir)
    assert result.code == 0, result.describe()
    assert "mandatory" not in result.output
