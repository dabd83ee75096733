"""The test cloud's generated configuration, read back with configparser: no cloud needed.

Each file is what the services read at start; these tests pin the values the cloud's
behaviour depends on (ports, the database each service uses, who authenticates as whom, the
fake compute host without database credentials) and the files' permissions.
"""

from __future__ import annotations

import configparser
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tools.testcloud.lib import bootstrap, configs, core, processes

PASSWORDS = {"db": "db-pw", "admin": "admin-pw", "service": "service-pw", "student": "student-pw"}
PASTE_FILES = ("neutron/api-paste.ini", "nova/api-paste.ini", "glance/glance-api-paste.ini")


@pytest.fixture
def lay(tmp_path: Path) -> core.Layout:
    """A cache root whose virtualenv ships the paste files the services copy."""
    lay = core.Layout(tmp_path / "testcloud")
    for rel in PASTE_FILES:
        path = lay.venv / "etc" / rel
        path.parent.mkdir(parents=True)
        path.write_text("[pipeline:main]\n")
    return lay


def read(lay: core.Layout, rel: str) -> configparser.ConfigParser:
    # [DEFAULT] read as a section of its own: configparser would otherwise copy its
    # options into every section, which oslo.config does not.
    parser = configparser.ConfigParser(interpolation=None, default_section="")
    with (lay.etc / rel).open() as handle:
        parser.read_file(handle)
    return parser


def written(lay: core.Layout) -> core.Layout:
    configs.write_configs(lay, PASSWORDS)
    return lay


def test_every_file_is_written_private_and_parses(lay: core.Layout) -> None:
    written(lay)
    for rel in configs.CONFIG_FILES:
        assert read(lay, rel).sections(), rel
        assert stat.S_IMODE((lay.etc / rel).stat().st_mode) == 0o600, rel
    for rel in PASTE_FILES:
        assert (lay.etc / rel).read_text() == "[pipeline:main]\n"
    for sub in configs.STATE_DIRS:
        assert (lay.state / sub).is_dir()


def test_unchanged_files_are_not_rewritten(lay: core.Layout) -> None:
    written(lay)
    path = lay.etc / "nova/nova.conf"
    os.utime(path, (0, 0))
    written(lay)
    assert path.stat().st_mtime == 0


def test_each_service_uses_its_own_database_on_our_mariadb(lay: core.Layout) -> None:
    written(lay)
    expected = {
        ("keystone/keystone.conf", "database"): "keystone",
        ("placement/placement.conf", "placement_database"): "placement",
        ("glance/glance-api.conf", "database"): "glance",
        ("neutron/neutron.conf", "database"): "neutron",
        ("nova/nova.conf", "database"): "nova",
        ("nova/nova.conf", "api_database"): "nova_api",
    }
    for (rel, section), database in expected.items():
        assert read(lay, rel)[section]["connection"] == (
            f"mysql+pymysql://openstack:db-pw@127.0.0.1:13306/{database}?charset=utf8"
        )
        assert database in bootstrap.DATABASES


def test_apis_check_tokens_as_their_service_user(lay: core.Layout) -> None:
    written(lay)
    for rel, user in (
        ("placement/placement.conf", "placement"),
        ("glance/glance-api.conf", "glance"),
        ("neutron/neutron.conf", "neutron"),
        ("nova/nova.conf", "nova"),
    ):
        auth = read(lay, rel)["keystone_authtoken"]
        assert auth["www_authenticate_uri"] == "http://127.0.0.1:5000/"
        assert auth["auth_url"] == "http://127.0.0.1:5000/"
        assert auth["service_token_roles_required"] == "true"
        assert (auth["username"], auth["password"], auth["project_name"]) == (
            user,
            "service-pw",
            "service",
        )
        assert auth["region_name"] == "RegionOne"


def test_neutron_binds_ports_with_our_driver_and_calls_nova(lay: core.Layout) -> None:
    written(lay)
    neutron = read(lay, "neutron/neutron.conf")
    assert neutron["DEFAULT"]["core_plugin"] == "ml2"
    assert neutron["DEFAULT"]["service_plugins"] == "router"
    assert neutron["DEFAULT"]["transport_url"] == "rabbit://guest:guest@127.0.0.1:5682/"
    assert neutron["DEFAULT"]["api_paste_config"] == str(lay.etc / "neutron/api-paste.ini")
    assert neutron["nova"]["username"] == "nova"
    assert "www_authenticate_uri" not in neutron["nova"]
    ml2 = read(lay, "neutron/plugins/ml2/ml2_conf.ini")
    assert ml2["ml2"]["mechanism_drivers"] == "calclab_loopback"
    assert ml2["ml2"]["tenant_network_types"] == "vxlan"
    assert ml2["ml2_type_flat"]["flat_networks"] == "public"


def test_nova_compute_is_the_fake_host_without_database_credentials(lay: core.Layout) -> None:
    written(lay)
    compute = read(lay, "nova-compute/nova.conf")
    assert compute["DEFAULT"]["host"] == core.COMPUTE_HOST
    assert compute["DEFAULT"]["compute_driver"] == "fake.FakeDriverWithoutFakeNodes"
    assert not {"database", "api_database"} & set(compute.sections())
    assert "db-pw" not in (lay.etc / "nova-compute/nova.conf").read_text()
    # Everything else every Nova process shares is there, as in nova.conf.
    nova = read(lay, "nova/nova.conf")
    for section in ("keystone_authtoken", "placement", "neutron", "service_user", "glance"):
        assert dict(compute[section]) == dict(nova[section]), section
    assert compute["DEFAULT"]["allow_resize_to_same_host"] == "true"
    assert compute["service_user"]["send_service_user_token"] == "true"
    assert nova["scheduler"]["discover_hosts_in_cells_interval"] == "5"
    assert nova["wsgi"]["api_paste_config"] == str(lay.etc / "nova/api-paste.ini")


def test_state_paths_stay_under_the_cache_root(lay: core.Layout) -> None:
    written(lay)
    glance = read(lay, "glance/glance-api.conf")
    assert glance["file"]["filesystem_store_datadir"] == str(lay.state / "glance/images")
    keystone = read(lay, "keystone/keystone.conf")
    assert keystone["fernet_tokens"]["key_repository"] == str(lay.state / "keystone/fernet-keys")
    for rel in configs.CONFIG_FILES:
        for section in read(lay, rel).values():
            for key, value in section.items():
                if value.startswith("/"):
                    assert value.startswith(str(lay.root)), f"{rel} {key} = {value}"


def test_secrets_are_generated_once_and_kept(lay: core.Layout) -> None:
    first = configs.load_secrets(lay)
    assert set(first) == set(configs.PASSWORD_NAMES)
    assert len(set(first.values())) == len(first)
    assert configs.load_secrets(lay) == first
    assert stat.S_IMODE(lay.secrets_file.stat().st_mode) == 0o600


def test_clients_get_the_student_and_the_admin(lay: core.Layout) -> None:
    configs.write_client_files(lay, PASSWORDS)
    clouds = yaml.safe_load(lay.clouds_yaml.read_text())["clouds"]
    student, admin = clouds["testcloud"], clouds["testcloud-admin"]
    assert student["auth"]["auth_url"] == "http://127.0.0.1:5000/v3"
    assert (student["auth"]["username"], student["auth"]["password"]) == ("student", "student-pw")
    assert student["auth"]["project_name"] == "calculator-lab"
    assert (admin["auth"]["username"], admin["auth"]["project_name"]) == ("admin", "admin")
    assert "export OS_PASSWORD='student-pw'" in (lay.root / "openrc").read_text()
    assert "export OS_USERNAME=admin" in (lay.root / "openrc-admin").read_text()


def test_process_table_has_one_port_per_process_and_stops_everything() -> None:
    ports = [p.port for p in processes.PROCESSES if p.port is not None]
    assert len(ports) == len(set(ports))
    names = [p.name for p in processes.PROCESSES]
    assert sorted(names) == sorted([*processes.SERVICE_NAMES, *processes.INFRASTRUCTURE])
    assert processes.INFRASTRUCTURE == ("rabbitmq", "mariadb")
    assert core.COMPUTE_HOST in bootstrap.COMPUTE_READY_SQL


def test_env_puts_only_the_clients_on_path(tmp_path: Path) -> None:
    tool = Path(__file__).resolve().parents[2] / "tools" / "testcloud" / "testcloud"
    out = subprocess.run(
        [sys.executable, str(tool), "env"],
        env={**os.environ, "CALCLAB_CACHE": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    root = tmp_path / "testcloud"
    assert out.splitlines() == [
        f"export OS_CLIENT_CONFIG_FILE={root / 'clouds.yaml'}",
        "export OS_CLOUD=testcloud",
        f"export CALCLAB_TESTCLOUD={root}",
        f'export PATH={root / "bin"}:"$PATH"',
    ]
