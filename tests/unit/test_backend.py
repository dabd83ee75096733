"""Which state backend every command uses (labctl/backend.py): the variable, else the login,
else the local directory; the line that names it, secrets masked; what the engine is given.

The credentials files are written the way the built CLI 3.260 writes them
(`pulumi login file:///tmp/x` under a fresh PULUMI_HOME, then read back).
"""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from labctl import backend, toolchain
from labctl.paths import ROOT

S3 = "s3://class-bucket?endpoint=objects.example.edu:9000&s3ForcePathStyle=true"


def login(folder: Path, url: str) -> Path:
    """credentials.json as `pulumi login URL` leaves it for a self-managed backend."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "credentials.json"
    path.write_text(
        json.dumps(
            {
                "current": url,
                "accessTokens": {url: ""},
                "accounts": {url: {"lastValidatedAt": "0001-01-01T00:00:00Z"}},
            },
            indent=4,
        )
    )
    return path


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CALCLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path / "home"


def test_the_variable_wins_over_a_login(home: Path) -> None:
    login(home / ".pulumi", S3)
    env = {"PULUMI_HOME": str(home / ".pulumi"), "PULUMI_BACKEND_URL": "file:///mnt/shared/state"}
    chosen = backend.decide(env)
    assert (chosen.url, chosen.source) == ("file:///mnt/shared/state", "PULUMI_BACKEND_URL")
    assert chosen.line() == (
        "lab: state backend file:///mnt/shared/state (from PULUMI_BACKEND_URL)"
    )


def test_a_login_wins_over_the_local_directory(home: Path) -> None:
    credentials = login(home / ".pulumi", S3)
    chosen = backend.decide({"PULUMI_HOME": str(home / ".pulumi")})
    assert (chosen.url, chosen.source) == (S3, "pulumi login")
    assert chosen.line() == f"lab: state backend {S3} (from pulumi login, {credentials})"
    # The engine gets the URL and the folder of the login's tokens.
    assert chosen.environment() == {
        "PULUMI_BACKEND_URL": S3,
        "PULUMI_CREDENTIALS_PATH": str(home / ".pulumi"),
    }


def test_no_variable_and_no_login_is_the_local_directory(home: Path, tmp_path: Path) -> None:
    chosen = backend.decide({"PULUMI_HOME": str(home / ".pulumi")})
    local = (tmp_path / "cache" / "state").as_uri()
    assert (chosen.url, chosen.source) == (local, "local")
    assert chosen.line() == (
        f"lab: state backend {local} (local: no PULUMI_BACKEND_URL, no pulumi login)"
    )


def test_after_pulumi_logout_nothing_is_current(home: Path) -> None:
    # `pulumi logout` keeps the file and its tokens, without `current`.
    path = login(home / ".pulumi", S3)
    document = json.loads(path.read_text())
    del document["current"]
    path.write_text(json.dumps(document))
    assert backend.decide({"PULUMI_HOME": str(home / ".pulumi")}).source == "local"
    path.write_text("")  # an interrupted write: the CLI reads it as no login
    assert backend.decide({"PULUMI_HOME": str(home / ".pulumi")}).source == "local"


def test_the_login_is_read_where_the_cli_reads_it(home: Path, tmp_path: Path) -> None:
    login(tmp_path / "pulumi-home", "file:///from-pulumi-home")
    login(tmp_path / "credentials", "file:///from-credentials-path")
    env = {"HOME": str(home), "PULUMI_HOME": str(tmp_path / "pulumi-home")}
    assert backend.decide(env).url == "file:///from-pulumi-home"
    # Without PULUMI_HOME, the CLI's default is the account's home from /etc/passwd, not $HOME.
    account = Path(pwd.getpwuid(os.getuid()).pw_dir) / ".pulumi"
    assert backend.decide({"HOME": str(home)}).credentials == account
    env["PULUMI_CREDENTIALS_PATH"] = str(tmp_path / "credentials")
    assert backend.decide(env).url == "file:///from-credentials-path"
    assert backend.decide(env).credentials == tmp_path / "credentials"


def test_an_unreadable_login_is_an_error_not_a_silent_local_deploy(home: Path) -> None:
    path = login(home / ".pulumi", S3)
    path.write_text("{not json")
    with pytest.raises(backend.BackendError, match=str(path)):
        backend.decide({"PULUMI_HOME": str(home / ".pulumi")})


def test_an_encrypted_login_is_left_to_the_engine(home: Path) -> None:
    (home / ".pulumi").mkdir(parents=True)
    envelope = {"$pulumiSecureStore": 1, "backend": "os", "algo": "x", "nonce": "", "data": ""}
    (home / ".pulumi" / "credentials.json").write_text(json.dumps(envelope))
    chosen = backend.decide({"PULUMI_HOME": str(home / ".pulumi")})
    assert (chosen.url, chosen.source) == (None, "pulumi login")
    assert "PULUMI_BACKEND_URL" not in chosen.environment()
    assert "encrypted" in chosen.line()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://lab:s3cret@db.example.edu/state", "postgres://lab:***@db.example.edu/state"),
        (
            "azblob://state?storage_account=lab&sas_token=sv%3D2020&sig=abc",
            "azblob://state?storage_account=lab&sas_token=***&sig=***",
        ),
        (
            "s3://b?endpoint=h:9000&secret_access_key=x",
            "s3://b?endpoint=h:9000&secret_access_key=***",
        ),
        (S3, S3),  # nothing secret: exactly as typed
        ("file:///root/.cache/calculator-lab/state", "file:///root/.cache/calculator-lab/state"),
        ("https://api.pulumi.com", "https://api.pulumi.com"),
    ],
)
def test_secrets_in_the_url_are_masked(url: str, shown: str) -> None:
    assert backend.mask(url) == shown
    assert backend.Backend(url, "PULUMI_BACKEND_URL", Path("/x")).line() == (
        f"lab: state backend {shown} (from PULUMI_BACKEND_URL)"
    )


def test_the_toolchain_environment_uses_the_login(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Today's bug: the toolchain's environment pointed at the local directory whenever
    PULUMI_BACKEND_URL was unset, and its PULUMI_HOME hid the login's credentials."""
    login(home / ".pulumi", S3)
    built = toolchain.built_paths()
    plan = toolchain.Plan(None, built.pulumi_home, ["pulumi"], "test")
    user = {"PULUMI_HOME": str(home / ".pulumi"), "PATH": "/usr/bin:/bin"}
    env = toolchain.environment(plan, built, user)
    assert env["PULUMI_BACKEND_URL"] == S3
    assert env["PULUMI_HOME"] == str(built.pulumi_home)  # the plugins stay the toolchain's
    assert env["PULUMI_CREDENTIALS_PATH"] == str(home / ".pulumi")  # the login's tokens


def test_pulumi_env_exports_the_credentials_folder_not_the_logins_url(
    home: Path, tmp_path: Path
) -> None:
    """scripts/pulumi-env's fallback (no virtualenv: the system Python) and the virtualenv's
    print the same backend exports, and name the backend on stderr."""
    login(home / ".pulumi", S3)
    env = {
        "PULUMI_HOME": str(home / ".pulumi"),
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(ROOT),
        "CALCLAB_CACHE": str(tmp_path / "cache"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "labctl.backend"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stderr.startswith(f"lab: state backend {S3} (from pulumi login")
    # A later `pulumi login` in that shell moves lab and pulumi together: no URL exported.
    assert result.stdout.splitlines() == [f"export PULUMI_CREDENTIALS_PATH={home / '.pulumi'}"]
