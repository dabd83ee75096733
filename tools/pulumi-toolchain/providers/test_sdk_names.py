"""Tests of sdk_names.py on the property names the built providers really derive.

`tools/pulumi-toolchain/build` saves each provider's `-dump-names` output beside its stamp; the
tests check that the dump agrees with the pip SDK, and that the checker notices each kind of
disagreement when one is planted. Skipped, naming the build command, until the providers are
built. Run: .venv/bin/python -m pytest tools/pulumi-toolchain/providers
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent

pytestmark = pytest.mark.engine


def _load_checker() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sdk_names", HERE / "sdk_names.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules while the module is being executed.
    sys.modules["sdk_names"] = module
    spec.loader.exec_module(module)
    return module


sdk_names = _load_checker()


def _stamps_dir() -> Path:
    prefix = subprocess.run(
        ["bash", "-c", f'. "{HERE.parent}/lib.sh" && printf %s "$TOOLCHAIN_PREFIX"'],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return Path(prefix) / "stamps"


def _dump(name: str) -> dict[str, Any]:
    path = _stamps_dir() / f"{name}.names.json"
    if not path.is_file():
        pytest.skip(f"{path} is missing: run tools/pulumi-toolchain/build {name}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _check(
    package: str, dump: dict[str, Any], capsys: pytest.CaptureFixture[str], *required: str
) -> tuple[int, str]:
    code = sdk_names.check(sdk_names.sdk_dir(package), dump, list(required))
    return int(code), capsys.readouterr().out


PORT = "openstack:networking/port:Port"
SUBNET = "openstack:networking/subnet:Subnet"
CONTAINER = "docker:index/container:Container"


@pytest.mark.parametrize("name", ["openstack", "docker"])
def test_built_provider_agrees_with_the_sdk(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _check(f"pulumi_{name}", _dump(name), capsys)
    assert code == 0, out
    assert " 0 mismatches" in out


def test_program_resources_are_all_mapped() -> None:
    openstack = _dump("openstack")
    docker = _dump("docker")
    for kind, name in [
        ("networking", "Network"),
        ("networking", "Subnet"),
        ("networking", "SubnetRoute"),
        ("networking", "Router"),
        ("networking", "RouterInterface"),
        ("networking", "RouterRoute"),
        ("networking", "Port"),
        ("networking", "SecGroup"),
        ("networking", "SecGroupRule"),
        ("networking", "FloatingIp"),
        ("networking", "FloatingIpAssociate"),
        ("compute", "Instance"),
        ("compute", "Keypair"),
    ]:
        token = f"openstack:{kind}/{name[0].lower()}{name[1:]}:{name}"
        assert token in openstack["resources"], token
    assert "openstack:networking/getNetwork:getNetwork" in openstack["functions"]
    assert openstack["resources"][PORT]["tf"] == "openstack_networking_port_v2"
    for name in ["Network", "Container", "RemoteImage"]:
        assert f"docker:index/{name[0].lower()}{name[1:]}:{name}" in docker["resources"]
    assert docker["resources"]["docker:index/remoteImage:RemoteImage"]["tf"] == "docker_image"
    assert (
        docker["resources"]["docker:index/remoteImage:RemoteImage"]["fields"]["build"]["kind"]
        == "object"
    )


def test_a_renamed_property_fails(capsys: pytest.CaptureFixture[str]) -> None:
    dump = copy.deepcopy(_dump("openstack"))
    fields = dump["resources"][PORT]["fields"]
    fields["fixedIp"] = fields.pop("fixedIps")
    code, out = _check("pulumi_openstack", dump, capsys, PORT)
    assert code == 1
    assert "FAIL openstack:networking/port:Port (inputs): SDK property 'fixedIps'" in out


def test_a_list_flattened_to_an_object_fails(capsys: pytest.CaptureFixture[str]) -> None:
    dump = copy.deepcopy(_dump("openstack"))
    dump["resources"][SUBNET]["fields"]["allocationPools"]["kind"] = "object"
    code, out = _check("pulumi_openstack", dump, capsys, SUBNET)
    assert code == 1
    assert "'allocationPools' is a list in the SDK but object in the provider" in out


def test_a_nested_rename_fails(capsys: pytest.CaptureFixture[str]) -> None:
    dump = copy.deepcopy(_dump("docker"))
    nested = dump["resources"][CONTAINER]["fields"]["networksAdvanced"]["fields"]
    nested["ipv4"] = nested.pop("ipv4Address")
    code, out = _check("pulumi_docker", dump, capsys, CONTAINER)
    assert code == 1
    assert ".networksAdvanced: SDK property 'ipv4Address' is unknown" in out


def test_a_required_input_the_sdk_may_omit_fails(capsys: pytest.CaptureFixture[str]) -> None:
    dump = copy.deepcopy(_dump("openstack"))
    dump["resources"][PORT]["fields"]["name"]["required"] = True
    code, out = _check("pulumi_openstack", dump, capsys, PORT)
    assert code == 1
    assert "'name' is optional in the SDK but required by the provider" in out


def test_a_missing_token_fails_only_when_required(capsys: pytest.CaptureFixture[str]) -> None:
    dump = copy.deepcopy(_dump("openstack"))
    del dump["resources"][SUBNET]
    code, _ = _check("pulumi_openstack", dump, capsys)
    assert code == 0
    code, out = _check("pulumi_openstack", dump, capsys, SUBNET)
    assert code == 1
    assert f"FAIL {SUBNET}: not mapped by the provider" in out


def test_other_tokens_problems_are_notes(capsys: pytest.CaptureFixture[str]) -> None:
    dump = copy.deepcopy(_dump("openstack"))
    fields = dump["resources"][PORT]["fields"]
    fields["fixedIp"] = fields.pop("fixedIps")
    code, out = _check("pulumi_openstack", dump, capsys, SUBNET)
    assert code == 0
    assert "note openstack:networking/port:Port (inputs): SDK property 'fixedIps'" in out


def test_tokens_match_the_committed_files() -> None:
    for name in ["openstack", "docker"]:
        committed = json.loads((HERE / name / "sdk-tokens.json").read_text())
        assert committed == sdk_names.collect_tokens(sdk_names.sdk_dir(f"pulumi_{name}"))
