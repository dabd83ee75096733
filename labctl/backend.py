"""Which state backend every command uses: decided here, and only here.

Pulumi's own order, so that `lab` and a plain `pulumi` in the same shell agree:

1. `PULUMI_BACKEND_URL`, when set;
2. else the current `pulumi login`: the `current` key of `credentials.json` in the user's
   credentials folder (`PULUMI_CREDENTIALS_PATH`, else `PULUMI_HOME`, else `~/.pulumi` of the
   account), which
   is where `pulumi login s3://...`, `file://...`, `postgres://...` or Pulumi Cloud record it;
3. else our local directory `<cache>/state` (where a bare `pulumi` would ask for Pulumi Cloud).

The engine then gets the URL explicitly (`PULUMI_BACKEND_URL`) and the login's credentials
folder (`PULUMI_CREDENTIALS_PATH`): the toolchain's `PULUMI_HOME` holds the plugins we built, not
the user's `credentials.json`, and the CLI reads the tokens of a login from that folder alone
(measured with the built CLI 3.260: `pulumi whoami` under the toolchain's PULUMI_HOME answers
"PULUMI_ACCESS_TOKEN must be set", and names the login's backend once PULUMI_CREDENTIALS_PATH
points at the user's folder). Plugins keep coming from the toolchain's PULUMI_HOME: putting
them on PATH instead would make them "ambient" plugins, which the engine uses whatever version
a program asks for.

Standard library only: scripts/pulumi-env runs it with the system Python before the
virtualenv exists.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from labctl.errors import LabError
from labctl.paths import cache_dir

Source = Literal["PULUMI_BACKEND_URL", "pulumi login", "local"]

CREDENTIALS_FILE = "credentials.json"
# The CLI writes the file as an encrypted envelope with PULUMI_CREDENTIAL_STORE=auto|os; this
# key marks one (sdk/go/common/util/securestore/envelope.go). Only the CLI can open it.
ENVELOPE_MARKER = "$pulumiSecureStore"
# Query parameters whose value is a secret in a backend URL (an Azure SAS signature, a key, a
# token, a password); their values never reach the terminal or a log.
_SECRET_PARAMETER = re.compile(r"secret|passw|pwd|token|key|sig|credential", re.IGNORECASE)
MASK = "***"


class BackendError(LabError):
    """The login's credentials file cannot be read: deploying elsewhere would be silent."""


@dataclass(frozen=True)
class Backend:
    """The state backend of this run, where the decision came from, and the login's folder."""

    url: str | None  # None: an encrypted login's URL, which only the engine can read
    source: Source
    credentials: Path  # the folder of the user's credentials.json, handed to the engine

    def line(self) -> str:
        """The first line every command prints: where its state is, and why there."""
        where = mask(self.url) if self.url else "of your `pulumi login`"
        why = {
            "PULUMI_BACKEND_URL": "from PULUMI_BACKEND_URL",
            "pulumi login": f"from pulumi login, {self.credentials / CREDENTIALS_FILE}",
            "local": "local: no PULUMI_BACKEND_URL, no pulumi login",
        }[self.source]
        if self.url is None:
            why += ", encrypted: the engine reads it"
        return f"lab: state backend {where} ({why})"

    def environment(self) -> dict[str, str]:
        """What the engine needs to use this backend with the login's tokens."""
        env = {"PULUMI_CREDENTIALS_PATH": str(self.credentials)}
        if self.url is not None:
            env["PULUMI_BACKEND_URL"] = self.url
        return env

    def for_shell(self, env: dict[str, str]) -> dict[str, str]:
        """`env` as a shell should export it (scripts/pulumi-env). A login's URL is left out:
        the credentials folder carries it, and a later `pulumi login` in that shell then moves
        `lab` and `pulumi` together, which an exported PULUMI_BACKEND_URL would prevent."""
        if self.source == "pulumi login":
            return {key: value for key, value in env.items() if key != "PULUMI_BACKEND_URL"}
        return env


def user_pulumi_home(env: Mapping[str, str]) -> Path:
    """The user's own PULUMI_HOME (their plugins, their login), as Pulumi defaults it."""
    return Path(env.get("PULUMI_HOME") or Path(env.get("HOME", str(Path.home()))) / ".pulumi")


def credentials_dir(env: Mapping[str, str]) -> Path:
    """Where the CLI reads and writes credentials.json (sdk/go/common/workspace/creds.go):
    PULUMI_CREDENTIALS_PATH, else PULUMI_HOME, else `.pulumi` in the account's home directory
    from the user database, not $HOME (Go's os/user; measured: with HOME=/tmp/x the built CLI's
    `pulumi login` still writes /root/.pulumi/credentials.json)."""
    folder = env.get("PULUMI_CREDENTIALS_PATH") or env.get("PULUMI_HOME")
    return Path(folder) if folder else account_home() / ".pulumi"


def account_home() -> Path:
    try:
        return Path(pwd.getpwuid(os.getuid()).pw_dir)
    except KeyError:  # a uid without an entry: Go falls back to $HOME as well
        return Path.home()


def local_url() -> str:
    return (cache_dir() / "state").as_uri()


def decide(env: Mapping[str, str]) -> Backend:
    """The backend of a command run in `env`: the variable, else the login, else local."""
    folder = credentials_dir(env)
    if url := env.get("PULUMI_BACKEND_URL"):
        return Backend(url, "PULUMI_BACKEND_URL", folder)
    path = folder / CREDENTIALS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Backend(local_url(), "local", folder)
    except OSError as err:
        raise BackendError(f"cannot read your pulumi login in {path}: {err.strerror}") from None
    if not text.strip():  # the CLI treats an empty file as no login, too
        return Backend(local_url(), "local", folder)
    try:
        document = json.loads(text)
    except ValueError as err:
        raise BackendError(
            f"{path}: not valid JSON ({err}); run `pulumi login URL` again, or set "
            "PULUMI_BACKEND_URL"
        ) from None
    if not isinstance(document, dict):
        raise BackendError(f"{path}: expected a JSON object; run `pulumi login URL` again")
    if ENVELOPE_MARKER in document:
        return Backend(None, "pulumi login", folder)
    current = document.get("current")
    if not current:  # after `pulumi logout`: tokens may remain, no backend is current
        return Backend(local_url(), "local", folder)
    return Backend(str(current), "pulumi login", folder)


# What the CLI says when the store itself failed (go-cloud's blob errors, the snapshot writer,
# the S3 SDK, the PostgreSQL driver), as opposed to a resource or the program.
_STORE_FAILURE = ("blob (key", "failed to save snapshot", "operation error S3", "pq: ")
_CAUSE = re.compile(r"(dial tcp \S+: [^:]+?: [a-z ]+|pq: [^:]+|connection (?:refused|reset)[^:]*)")


def store_failure(text: str, url: str | None) -> str | None:
    """One line for an operation that failed because the state backend did (unreachable, or
    refusing a write), naming the backend; None for any other failure."""
    flat = " ".join(text.split())
    if not url or not any(marker in flat for marker in _STORE_FAILURE):
        return None
    causes = _CAUSE.findall(flat)
    cause = causes[-1] if causes else flat[-200:]
    return (
        f"the state backend {mask(url)} failed: {cause}. Once it answers again, run the same "
        "command: a lock this process left is removed and the stack refreshed"
    )


def mask(url: str) -> str:
    """The URL with its secrets (a password, a key or token parameter) replaced by ***."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        netloc = f"{userinfo}@{host}"
    query = "&".join(_masked_parameter(item) for item in parts.query.split("&"))
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # nothing secret: exactly as typed
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _masked_parameter(item: str) -> str:
    key, equals, _ = item.partition("=")
    return f"{key}={MASK}" if equals and _SECRET_PARAMETER.search(key) else item


def print_exports(values: Mapping[str, str]) -> None:
    """`export` lines (scripts/pulumi-env) for what `values` sets or changes in this shell."""
    for key, value in values.items():
        if os.environ.get(key) != value:
            print(f"export {key}={shlex.quote(value)}")


def main() -> None:
    """`python3 -m labctl.backend`: export lines for scripts/pulumi-env before the virtualenv."""
    chosen = decide(os.environ)
    print(chosen.line(), file=sys.stderr)
    print_exports(chosen.for_shell(chosen.environment()))


if __name__ == "__main__":
    main()
