"""Every service's configuration, generated credentials, and the clients' files.

Each INI file is built by one function as plain data (section -> option -> value) and
written with configparser; ``CONFIG_FILES`` lists them by path under ``etc/``. A service
that needs another file (an agent, another driver) adds a function and a line there.
"""

from __future__ import annotations

import configparser
import io
import json
import secrets
import shutil
from collections.abc import Callable, Mapping

from .core import AMQP_PORT, COMPUTE_HOST, DB_PORT, HOST, KEYSTONE_PORT, REGION, Layout

Sections = dict[str, dict[str, str]]
Passwords = Mapping[str, str]

PASSWORD_NAMES = ("db", "admin", "service", "student")
KEYSTONE_URL = f"http://{HOST}:{KEYSTONE_PORT}/"


def load_secrets(lay: Layout) -> dict[str, str]:
    """The generated passwords, created on first use and kept across restarts."""
    lay.state.mkdir(parents=True, exist_ok=True)
    if lay.secrets_file.exists():
        data: dict[str, str] = json.loads(lay.secrets_file.read_text())
    else:
        data = {}
    if any(n not in data for n in PASSWORD_NAMES):
        for name in PASSWORD_NAMES:
            data.setdefault(name, secrets.token_urlsafe(18))
        tmp = lay.secrets_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.chmod(0o600)
        tmp.replace(lay.secrets_file)
    return data


def db_url(pw: Passwords, name: str) -> str:
    return f"mysql+pymysql://openstack:{pw['db']}@{HOST}:{DB_PORT}/{name}?charset=utf8"


def amqp_url() -> str:
    return f"rabbit://guest:guest@{HOST}:{AMQP_PORT}/"


def service_auth(pw: Passwords, user: str) -> dict[str, str]:
    """How a service authenticates to Keystone as its service user."""
    return {
        "auth_url": KEYSTONE_URL,
        "auth_type": "password",
        "project_domain_name": "Default",
        "user_domain_name": "Default",
        "project_name": "service",
        "username": user,
        "password": pw["service"],
        "region_name": REGION,
    }


def authtoken(pw: Passwords, user: str) -> dict[str, str]:
    """``[keystone_authtoken]``: how an API checks the tokens it is given."""
    return {
        "www_authenticate_uri": KEYSTONE_URL,
        "service_token_roles_required": "true",
        **service_auth(pw, user),
    }


def keystone(lay: Layout, pw: Passwords) -> Sections:
    st = lay.state
    return {
        "DEFAULT": {"log_file": str(lay.logfile("keystone-app"))},
        "database": {"connection": db_url(pw, "keystone")},
        "token": {"provider": "fernet"},
        "fernet_tokens": {"key_repository": f"{st}/keystone/fernet-keys"},
        "credential": {"key_repository": f"{st}/keystone/credential-keys"},
    }


def placement(lay: Layout, pw: Passwords) -> Sections:
    return {
        "DEFAULT": {"log_file": str(lay.logfile("placement-app"))},
        "placement_database": {"connection": db_url(pw, "placement")},
        "api": {"auth_strategy": "keystone"},
        "keystone_authtoken": authtoken(pw, "placement"),
    }


def glance(lay: Layout, pw: Passwords) -> Sections:
    st = lay.state
    return {
        "DEFAULT": {
            "log_file": str(lay.logfile("glance-app")),
            "enabled_backends": "file:file",
        },
        "database": {"connection": db_url(pw, "glance")},
        "glance_store": {"default_backend": "file"},
        "file": {"filesystem_store_datadir": f"{st}/glance/images"},
        "os_glance_staging_store": {"filesystem_store_datadir": f"{st}/glance/staging"},
        "os_glance_tasks_store": {"filesystem_store_datadir": f"{st}/glance/tasks"},
        "paste_deploy": {"flavor": "keystone"},
        "oslo_concurrency": {"lock_path": f"{st}/glance/locks"},
        "keystone_authtoken": authtoken(pw, "glance"),
    }


def neutron(lay: Layout, pw: Passwords) -> Sections:
    st = lay.state
    return {
        "DEFAULT": {
            "log_file": str(lay.logfile("neutron-app")),
            "core_plugin": "ml2",
            "service_plugins": "router",
            "auth_strategy": "keystone",
            "transport_url": amqp_url(),
            "state_path": f"{st}/neutron",
            "api_paste_config": f"{lay.etc}/neutron/api-paste.ini",
            "dhcp_agent_notification": "false",
            "notify_nova_on_port_status_changes": "true",
            "notify_nova_on_port_data_changes": "true",
        },
        "database": {"connection": db_url(pw, "neutron")},
        "oslo_concurrency": {"lock_path": f"{st}/neutron/locks"},
        "keystone_authtoken": authtoken(pw, "neutron"),
        "nova": service_auth(pw, "nova"),
    }


def ml2(lay: Layout, pw: Passwords) -> Sections:
    # No agents: our calclab_loopback driver binds every port (see calclab_ml2/).
    return {
        "ml2": {
            "type_drivers": "flat,vxlan",
            "tenant_network_types": "vxlan",
            "mechanism_drivers": "calclab_loopback",
            "extension_drivers": "port_security",
        },
        "ml2_type_flat": {"flat_networks": "public"},
        "ml2_type_vxlan": {"vni_ranges": "1:10000"},
    }


def nova_common(lay: Layout, pw: Passwords) -> Sections:
    """What every Nova process reads, the API and conductor as much as nova-compute."""
    st = lay.state
    return {
        "DEFAULT": {
            "transport_url": amqp_url(),
            "state_path": f"{st}/nova",
            "my_ip": HOST,
            "allow_resize_to_same_host": "true",
        },
        "oslo_concurrency": {"lock_path": f"{st}/nova/locks"},
        "vnc": {"enabled": "false"},
        "glance": {"region_name": REGION},
        "keystone_authtoken": authtoken(pw, "nova"),
        "placement": service_auth(pw, "placement"),
        "neutron": service_auth(pw, "neutron"),
        "service_user": {**service_auth(pw, "nova"), "send_service_user_token": "true"},
    }


def nova(lay: Layout, pw: Passwords) -> Sections:
    return {
        **nova_common(lay, pw),
        "api_database": {"connection": db_url(pw, "nova_api")},
        "database": {"connection": db_url(pw, "nova")},
        "conductor": {"workers": "1"},
        "scheduler": {"workers": "1", "discover_hosts_in_cells_interval": "5"},
        "wsgi": {"api_paste_config": f"{lay.etc}/nova/api-paste.ini"},
    }


def nova_compute(lay: Layout, pw: Passwords) -> Sections:
    # nova-compute must not see database credentials: it reaches the database only through
    # the conductor, and refuses to start if it could go direct.
    common = nova_common(lay, pw)
    fake_host = {"host": COMPUTE_HOST, "compute_driver": "fake.FakeDriverWithoutFakeNodes"}
    return {**common, "DEFAULT": {**fake_host, **common["DEFAULT"]}}


CONFIG_FILES: dict[str, Callable[[Layout, Passwords], Sections]] = {
    "keystone/keystone.conf": keystone,
    "placement/placement.conf": placement,
    "glance/glance-api.conf": glance,
    "neutron/neutron.conf": neutron,
    "neutron/plugins/ml2/ml2_conf.ini": ml2,
    "nova/nova.conf": nova,
    "nova-compute/nova.conf": nova_compute,
}

# The paste pipelines ship in the virtualenv's etc/; services look for them beside their conf.
PASTE_FILES = (
    ("neutron", "api-paste.ini"),
    ("nova", "api-paste.ini"),
    ("glance", "glance-api-paste.ini"),
)

# RabbitMQ's own formats (sysctl-like, Erlang terms), not INI.
RABBITMQ_FILES = {
    "rabbitmq/rabbitmq.conf": "loopback_users.guest = true\n",
    "rabbitmq/enabled_plugins": "[].\n",
    "rabbitmq/rabbitmq-env.conf": "",
}

STATE_DIRS = (
    "glance/images",
    "glance/staging",
    "glance/tasks",
    "glance/locks",
    "neutron/locks",
    "nova/locks",
    "nova/instances",
)


def render(sections: Sections) -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_dict(sections)
    out = io.StringIO()
    parser.write(out)
    return out.getvalue()


def write_configs(lay: Layout, pw: Passwords) -> None:
    """(Re)write every configuration file; cheap, and keeps them in step with this tool."""
    for rel, build in CONFIG_FILES.items():
        path = lay.etc / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        text = render(build(lay, pw))
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            path.chmod(0o600)
    for service, name in PASTE_FILES:
        shutil.copyfile(lay.venv / "etc" / service / name, lay.etc / service / name)
    for sub in STATE_DIRS:
        (lay.state / sub).mkdir(parents=True, exist_ok=True)
    for rel, text in RABBITMQ_FILES.items():
        path = lay.etc / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def write_client_files(lay: Layout, pw: Passwords) -> None:
    """clouds.yaml (clouds ``testcloud`` and ``testcloud-admin``), openrc and openrc-admin."""
    auth = f"{KEYSTONE_URL}v3"
    clients = (
        # cloud, openrc suffix, user, password, project
        ("testcloud", "", "student", pw["student"], "calculator-lab"),
        ("testcloud-admin", "-admin", "admin", pw["admin"], "admin"),
    )
    text = "clouds:\n"
    for cloud, _, user, password, project in clients:
        text += f"""  {cloud}:
    auth:
      auth_url: {auth}
      username: {user}
      password: "{password}"
      project_name: {project}
      user_domain_name: Default
      project_domain_name: Default
    region_name: {REGION}
    interface: public
    identity_api_version: 3
"""
    lay.clouds_yaml.write_text(text)
    lay.clouds_yaml.chmod(0o600)
    for _, suffix, user, password, project in clients:
        rc = lay.root / f"openrc{suffix}"
        rc.write_text(
            f"export OS_AUTH_URL={auth}\nexport OS_USERNAME={user}\n"
            f"export OS_PASSWORD='{password}'\nexport OS_PROJECT_NAME={project}\n"
            "export OS_USER_DOMAIN_NAME=Default\nexport OS_PROJECT_DOMAIN_NAME=Default\n"
            f"export OS_REGION_NAME={REGION}\nexport OS_IDENTITY_API_VERSION=3\n"
            "export OS_INTERFACE=public\n"
        )
        rc.chmod(0o600)
