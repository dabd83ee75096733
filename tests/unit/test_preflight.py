"""The preflight's checks and messages (preflight/), on a described cloud.

`check` is pure, so most tests hand it a CloudFacts; `read_cloud` is run on a fake connection
shaped like openstacksdk's; `connect` is run for real against an address nothing listens on.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import openstack.exceptions
import pytest

from lab.config import LabConfig, load_config
from lab.names import TRIGGER_METADATA, stack_tag, student_tag
from lab.quota import FlavorSize, Needs
from lab.replacement import Seen
from preflight.checks import Report, check
from preflight.connection import CloudNotAnswering, CloudUnreachable, connect, credentials_present
from preflight.facts import CloudFacts, LabResources
from preflight.reading import read_cloud, read_servers

PUBLIC_ID = "6f1c0d5e-public"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPOFVePzrOpa7eDkuiuq+IG/Fpc6rGH7fq0i4kE4jaQC a@b"
ROOMY = {
    "instances": (20, 0),
    "cores": (40, 0),
    "ram_mib": (40960, 0),
    "key_pairs": (100, 0),
    "networks": (20, 0),
    "subnets": (20, 0),
    "ports": (100, 0),
    "routers": (20, 0),
    "floating_ips": (10, 0),
    "security_groups": (50, 1),
    "security_group_rules": (300, 4),
}


def facts(**changes: Any) -> CloudFacts:
    base: dict[str, Any] = {
        "cloud": "cloud 'testcloud'",
        "images": {"debian-12": "active", "half-uploaded": "queued"},
        "image_os": {"debian-12": ("debian", "12")},
        "flavors": {"m1.tiny": FlavorSize(1, 512), "m1.small": FlavorSize(1, 2048)},
        "networks": {"public": (PUBLIC_ID, True), "shared-lan": ("lan-id", False)},
        "key_pairs": frozenset({"laptop"}),
        "quota": ROOMY,
    }
    return CloudFacts(**(base | changes))


def stack(name: str, **values: Any) -> tuple[str, LabConfig]:
    base = {"target": "openstack", "externalNetwork": "public", "image": "debian-12"}
    return name, load_config(base | {"flavor": "m1.tiny"} | values, name)


def rendered(report: Report) -> list[str]:
    return report.render().splitlines()


def test_a_good_stack_passes() -> None:
    report = check(facts(), [stack("alice", keyPair="laptop", externalNetworkId=PUBLIC_ID)])
    assert report.ok, report.render()
    assert {row.resource for row in report.quota} == set(ROOMY)


def test_every_problem_is_listed_with_its_key_and_what_exists() -> None:
    report = check(
        facts(),
        [
            stack(
                "alice",
                image="debian-13",
                imageByRole={"front": "half-uploaded"},
                flavorByRole={"front": "m1.huge"},
                externalNetwork="publik",
                keyPair="desktop",
            )
        ],
    )
    assert rendered(report) == [
        "calculator-lab:imageByRole.front (alice): image 'half-uploaded' is queued; available: debian-12",
        "calculator-lab:image (alice): no image named 'debian-13'; available: debian-12",
        "calculator-lab:flavorByRole.front (alice): no flavor named 'm1.huge'; available: m1.small, m1.tiny",
        "calculator-lab:externalNetwork (alice): no network named 'publik'; available: public",
        "calculator-lab:keyPair (alice): no key pair named 'desktop' for this user (key pairs are per user); or give a public key instead: pulumi config set sshPublicKey \"$(cat ~/.ssh/id_ed25519.pub)\"; available: laptop",
    ]


def test_an_alpine_image_is_refused_naming_the_fit_ones() -> None:
    cloud = facts(
        images={"debian-12": "active", "alpine-3.20": "active"},
        image_os={"debian-12": ("debian", "12"), "alpine-3.20": ("alpine", "3.20")},
    )
    report = check(cloud, [stack("alice", imageByRole={"sum": "alpine-3.20"})])
    assert rendered(report) == [
        "calculator-lab:imageByRole.sum (alice): image 'alpine-3.20' is alpine 3.20 (os_distro, os_version): Alpine has OpenRC, not systemd, and its cloud images carry no python3 to run the calculator; lab image upload gives a Debian 12 image that fits; available: debian-12"
    ]


@pytest.mark.parametrize(
    ("distro", "version", "refused"),
    [
        (
            "ubuntu",
            "18.04",
            "Ubuntu 18.04 and older have python3 3.6 or older, the calculator needs 3.8+",
        ),
        ("Ubuntu", "16.04", "Ubuntu 18.04 and older have python3 3.6 or older"),
        ("ubuntu", "20.04", None),
        ("ubuntu", "24.04", None),
        ("debian", "10", "Debian 10 and older have python3 3.7 or older"),
        ("debian", "11.9", None),
        ("debian", "13", None),
        ("centos", "7", "CentOS 8 and older have python3 3.6"),
        ("cirros", "0.6.2", "CirrOS is a test image"),
        ("fedora", "40", None),  # not known to be unfit: accepted
    ],
)
def test_releases_known_too_old_are_refused_and_the_rest_accepted(
    distro: str, version: str, refused: str | None
) -> None:
    cloud = facts(images={"school": "active"}, image_os={"school": (distro, version)})
    report = check(cloud, [stack("alice", image="school")])
    if refused is None:
        assert report.ok, report.render()
        assert report.notes == ()
    else:
        [problem] = report.problems
        assert problem.key == "calculator-lab:image"
        assert refused in problem.message
        assert problem.message.endswith("lab image upload gives a Debian 12 image that fits")


@pytest.mark.parametrize(
    ("image_os", "says"),
    [
        ({}, "no os_distro/os_version property"),
        ({"school": ("ubuntu", "jammy")}, "os_version 'jammy' is not a release number"),
    ],
)
def test_an_image_that_cannot_be_judged_gets_a_warning_not_a_refusal(
    image_os: dict[str, tuple[str, str]], says: str
) -> None:
    cloud = facts(images={"school": "active"}, image_os=image_os)
    report = check(cloud, [stack("alice", image="school"), stack("bob", image="school")])
    assert report.ok, report.render()
    [note] = report.notes
    assert note.startswith("calculator-lab:image (alice, bob): image 'school': " + says)
    assert note.endswith("lab image upload gives a Debian 12 image that fits")


def test_an_internal_network_and_a_wrong_id_are_named() -> None:
    internal = check(facts(), [stack("alice", externalNetwork="shared-lan")])
    assert rendered(internal) == [
        "calculator-lab:externalNetwork (alice): network 'shared-lan' is not external (no floating IPs, no router gateway); available: public"
    ]
    wrong = check(
        facts(), [stack("alice", externalNetworkId="00000000-0000-4000-8000-000000000001")]
    )
    assert rendered(wrong) == [
        f"calculator-lab:externalNetworkId (alice): 00000000-0000-4000-8000-000000000001 is not the id of 'public' ({PUBLIC_ID}); set that id, or remove the key to look the network up by name: pulumi config rm externalNetworkId"
    ]


def test_a_class_gets_one_problem_per_missing_thing_naming_every_student() -> None:
    report = check(
        facts(),
        [stack("ann", image="ubuntu"), stack("ben", image="ubuntu"), stack("cid"), stack("dan")],
    )
    assert [(p.key, p.stacks) for p in report.problems] == [
        ("calculator-lab:image", ("ann", "ben"))
    ]


def test_the_quota_table_names_need_and_free() -> None:
    tight = ROOMY | {"instances": (8, 4), "floating_ips": (10, 10)}
    report = check(facts(quota=tight), [stack("alice")])
    assert rendered(report) == [
        "quota (alice): not enough instances, floating_ips left in the project (table below); free some or ask for a higher quota",
        "quota: the project cannot hold what the stacks still need:",
        "  resource                need  free  limit  used",
        "  instances                  5     4      8     4",
        "  floating_ips               1     0     10    10",
    ]


def test_unlimited_quotas_are_never_short() -> None:
    report = check(facts(quota=ROOMY | {"instances": (-1, 500)}), [stack("alice")])
    assert report.ok
    (row,) = [r for r in report.quota if r.resource == "instances"]
    assert row.free is None


def held(**counts: int) -> Needs:
    return Needs(**counts)


def test_a_rerun_does_not_count_what_the_stack_already_holds() -> None:
    # alice's lab is up: five of the eight instances are hers, so nothing more is needed.
    mine = LabResources(frozenset({"alice"}), ("alice-private",), held(instances=5, ports=7))
    report = check(
        facts(quota=ROOMY | {"instances": (8, 5)}, students={"alice": mine}), [stack("alice")]
    )
    assert report.ok, report.render()
    (row,) = [r for r in report.quota if r.resource == "instances"]
    assert row.need == 0


def test_a_student_id_held_by_another_stack_is_refused_naming_it() -> None:
    theirs = LabResources(
        frozenset({"alice"}), ("alice-private", "alice-gateway", "alice-front"), held(instances=5)
    )
    report = check(facts(students={"alice": theirs}), [stack("alice-2", student="alice")])
    assert rendered(report)[0] == (
        "calculator-lab:student (alice-2): student id 'alice' belongs to stack alice (it holds"
        " alice-private, alice-gateway, alice-front); choose another id: pulumi config set"
        " student alice-2"
    )


def test_untagged_resources_and_its_own_are_not_a_conflict() -> None:
    legacy = LabResources(frozenset({""}), ("alice-private",), held())
    assert check(facts(students={"alice": legacy}), [stack("alice")]).ok
    own = LabResources(frozenset({"alice"}), ("alice-private",), held())
    assert check(facts(students={"alice": own}), [stack("alice")]).ok


def test_two_stacks_of_a_class_with_one_id_are_refused() -> None:
    report = check(facts(), [stack("ann"), stack("ann-bis", student="ann")])
    assert [p.render() for p in report.problems] == [
        "calculator-lab:student (ann, ann-bis): stacks ann, ann-bis all use student id 'ann':"
        " physical names would collide; give each its own"
    ]


def test_docker_stacks_are_not_checked() -> None:
    report = check(facts(images={}), [("dev", load_config({}, "dev"))])
    assert report.ok
    assert all(row.need == 0 for row in report.quota)


def test_servers_in_error_come_with_novas_fault() -> None:
    faults = {"alice-sum": "Quota exceeded for instances (code 413)", "bob-sum": "other"}
    report = check(facts(failed_servers=faults), [stack("alice")])
    assert report.notes == (
        "server alice-sum is in ERROR: Quota exceeded for instances (code 413)",
    )


# --- read_cloud on a fake connection ----------------------------------------------------------


def item(**attributes: Any) -> SimpleNamespace:
    return SimpleNamespace(**({"tags": [], "project_id": "p1", "id": ""} | attributes))


@dataclass
class FakeNetwork:
    networks_: list[SimpleNamespace] = field(default_factory=list)
    tagged: list[SimpleNamespace] = field(default_factory=list)

    def networks(self) -> list[SimpleNamespace]:
        return self.networks_

    def subnets(self, project_id: str) -> list[SimpleNamespace]:
        return [i for i in self.tagged if i.kind == "subnet"]

    def ports(self, project_id: str) -> list[SimpleNamespace]:
        return [i for i in self.tagged if i.kind == "port"]

    def routers(self, project_id: str) -> list[SimpleNamespace]:
        return [i for i in self.tagged if i.kind == "router"]

    def ips(self, project_id: str) -> list[SimpleNamespace]:
        return []

    def security_groups(self, project_id: str) -> list[SimpleNamespace]:
        return [i for i in self.tagged if i.kind == "group"]

    def security_group_rules(self, project_id: str) -> list[SimpleNamespace]:
        return [item(security_group_id="g1"), item(security_group_id="default-group")]

    def get_quota(self, project: str, details: bool) -> SimpleNamespace:
        assert details
        entry = {"limit": 10, "used": 2, "reserved": 1}
        return SimpleNamespace(**{name: entry for name in ROOMY})


def fake_connection() -> SimpleNamespace:
    tags = [student_tag("alice"), stack_tag("alice")]
    network = FakeNetwork(
        networks_=[
            item(name="public", id=PUBLIC_ID, is_router_external=True, project_id="admin"),
            item(name="alice-private", id="n1", is_router_external=False, tags=tags),
        ],
        tagged=[
            item(kind="subnet", name="alice-private", id="s1", tags=tags),
            item(kind="port", name="alice-front", id="p1", tags=tags),
            item(kind="router", name="alice-gateway", id="r1", tags=tags),
            item(kind="group", name="alice-front", id="g1", tags=tags),
        ],
    )
    absolute = SimpleNamespace(
        instances=10,
        instances_used=1,
        total_cores=20,
        total_cores_used=1,
        total_ram=4096,
        total_ram_used=512,
        keypairs=100,
    )
    compute = SimpleNamespace(
        flavors=lambda details: [SimpleNamespace(name="m1.tiny", vcpus=1, ram=512)],
        keypairs=lambda: [SimpleNamespace(name="alice-key")],
        servers=lambda details: [
            SimpleNamespace(
                id="v1",
                name="alice-front",
                status="ERROR",
                tags=[student_tag("alice"), stack_tag("alice")],
                flavor={"original_name": "m1.tiny"},
                fault={"message": "Quota exceeded for instances", "code": 413},
                metadata={TRIGGER_METADATA: "t0"},
            ),
            SimpleNamespace(
                id="v2",
                name="alice-sum",
                status="ACTIVE",
                tags=[student_tag("alice"), stack_tag("alice")],
                flavor={"original_name": "m1.tiny"},
                fault=None,
                metadata={TRIGGER_METADATA: "t1", "other": "x"},
            ),
            SimpleNamespace(
                id="v3",
                name="alice-sub",
                status="SOFT_DELETED",
                tags=[],
                flavor={},
                fault=None,
                metadata={},
            ),
        ],
        get_limits=lambda: SimpleNamespace(absolute=absolute),
    )
    image = SimpleNamespace(images=lambda: [SimpleNamespace(name="debian-12", status="active")])
    return SimpleNamespace(current_project_id="p1", network=network, compute=compute, image=image)


def test_read_cloud_takes_the_snapshot_check_needs() -> None:
    snapshot = read_cloud(fake_connection(), "cloud 'fake'")
    assert snapshot.images == {"debian-12": "active"}
    assert snapshot.networks == {"public": (PUBLIC_ID, True), "alice-private": ("n1", False)}
    assert snapshot.quota["instances"] == (10, 1)
    assert snapshot.quota["key_pairs"] == (100, 1)
    assert snapshot.quota["ports"] == (10, 3)  # used plus reserved
    assert snapshot.failed_servers == {"alice-front": "Quota exceeded for instances (code 413)"}
    # What lab/replacement.py decides from: state and recorded trigger; a deleted one is gone.
    assert snapshot.servers == {
        "alice-front": (Seen("v1", failed=True, trigger="t0"),),
        "alice-sum": (Seen("v2", failed=False, trigger="t1"),),
    }
    assert read_servers(fake_connection()) == snapshot.servers
    alice = snapshot.students["alice"]
    assert alice.stacks == frozenset({"alice"})
    assert set(alice.names) == {"alice-private", "alice-gateway", "alice-front", "alice-sum"}
    assert alice.held == Needs(
        instances=2,
        cores=2,
        ram_mib=1024,
        key_pairs=1,
        networks=1,
        subnets=1,
        ports=1,
        routers=1,
        security_groups=1,
        security_group_rules=1,
    )


# --- connecting ---------------------------------------------------------------------------------


def test_credentials_are_found_where_the_provider_looks() -> None:
    assert not credentials_present({}, {})
    assert credentials_present({"OS_CLOUD": "testcloud"}, {})
    assert credentials_present({"OS_AUTH_URL": "http://x:5000/v3"}, {})
    assert credentials_present({}, {"cloud": "mycloud"})
    assert not credentials_present({"OS_PASSWORD": "x"}, {"region": "RegionOne"})


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_auth_url_is_one_line_naming_user_and_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE", "OS_AUTH_URL"):
        monkeypatch.delenv(name, raising=False)
    url = f"http://127.0.0.1:{closed_port()}/v3"
    provider = {
        "authUrl": url,
        "userName": "carol",
        "password": "secret",
        "tenantName": "calculator-lab",
        "userDomainName": "Default",
        "projectDomainName": "Default",
    }
    with pytest.raises(CloudNotAnswering) as caught:
        connect({}, provider)
    message = str(caught.value)
    assert message.startswith(
        f"OpenStack cannot be reached for the cloud of the openstack:* settings (user carol, auth URL {url}): "
    )
    assert message.endswith("check the auth URL and that the cloud is up")
    assert "\n" not in message


def test_an_unknown_cloud_name_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    with pytest.raises(CloudUnreachable, match="cannot configure cloud 'nowhere'"):
        connect({}, {"cloud": "nowhere"})


def test_a_listing_that_races_a_deletion_is_read_again() -> None:
    conn = fake_connection()
    calls = {"n": 0}
    rules = conn.network.security_group_rules

    def racing(project_id: str) -> list[SimpleNamespace]:
        calls["n"] += 1
        if calls["n"] == 1:  # another stack deleted a group while Neutron listed the rules
            raise openstack.exceptions.NotFoundException("Security group g9 does not exist")
        listed: list[SimpleNamespace] = rules(project_id)
        return listed

    conn.network.security_group_rules = racing
    assert read_cloud(conn, "cloud 'fake'").students["alice"].held.security_group_rules == 1
    assert calls["n"] == 2


def test_a_persistent_api_error_is_one_line_naming_the_cloud() -> None:
    conn = fake_connection()

    def forbidden(project: str, details: bool) -> None:
        raise openstack.exceptions.ForbiddenException("Policy does not allow get_quota")

    conn.network.get_quota = forbidden
    with pytest.raises(CloudUnreachable) as caught:
        read_cloud(conn, "cloud 'fake'")
    assert str(caught.value) == (
        "preflight could not read cloud 'fake': Policy does not allow get_quota"
    )
