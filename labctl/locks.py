"""Who holds a stack's lock on a self-managed backend (file://, s3://, postgres://).

Pulumi's DIY backends lock a stack for the whole of an `up`, `refresh` or `destroy` by writing
`.pulumi/locks/organization/<project>/<stack>/<id>.json` (`{"pid", "username", "hostname",
"timestamp"}`) into the store, and refuse a second operation with a message that lists each lock
as `<lock URL>: created by USER@HOST (pid N) at TIME`. This module turns that message into one
line that says who holds the stack and what to do, and reads the locks directly (no CLI command
reads them without taking the lock itself) so that `lab class status` can show a stack that
someone else is updating: file:// from the directory, s3:// with a signed ListObjectsV2 and
GetObject (AWS Signature Version 4, the store's keys from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY), postgres:// through `psql`. Where it cannot tell (no `psql`, no keys in
the environment, an unreachable store), it says None, never "not locked".
"""

from __future__ import annotations

import base64
import datetime
import getpass
import hashlib
import hmac
import html
import json
import os
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab.names import PROJECT

# `...: created by root@lab-7 (pid 4242) at 2026-12-04T21:30:02Z` (backend/diy/lock.go).
_CREATED_BY = re.compile(
    r"created by (?P<user>.+?)@(?P<host>\S+) \(pid (?P<pid>\d+)\) at (?P<at>\S+)"
)
# ListObjectsV2's answer: only the keys are wanted, and no XML parser need see the store's text.
_KEY = re.compile(r"<Key>([^<]*)</Key>")
LOCKED = "the stack is currently locked"
TIMEOUT = 10.0


@dataclass(frozen=True)
class Holder:
    """One lock on a stack: the process that wrote it."""

    user: str
    host: str
    pid: int
    since: str

    def describe(self) -> str:
        # The lock file's time has nanoseconds; the error message's, seconds.
        since = re.sub(r"\.\d+(?=Z|[+-]\d\d:\d\d$)", "", self.since)
        return f"{self.user}@{self.host} (pid {self.pid}, since {since})"


def all_stale_here(holders: list[Holder] | None) -> bool:
    """Whether the stack is locked, and only by processes of this machine that are gone (a
    `pulumi` that lost the backend mid-update could not delete its lock): then its lock may be
    removed. A lock of another machine is left for its owner."""
    return bool(holders) and all(is_stale_here(h) for h in holders or ())


def is_stale_here(holder: Holder) -> bool:
    """A lock of this machine and this account whose process is gone."""
    if holder.host != socket.gethostname() or holder.user != getpass.getuser():
        return False
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def holders_in(text: str) -> list[Holder]:
    """The lock holders Pulumi's error text names."""
    return [
        Holder(m["user"], m["host"], int(m["pid"]), m["at"]) for m in _CREATED_BY.finditer(text)
    ]


def locked_message(stack: str, text: str) -> str | None:
    """One line for a command refused because the stack is locked; None for other failures."""
    if LOCKED not in text:
        return None
    who = ", ".join(h.describe() for h in holders_in(text)) or "another process"
    return (
        f"stack {stack} is locked: {who} is updating it. Wait for that to finish; if that "
        f"process is gone (it crashed, or lost the backend), remove the lock with "
        f"`pulumi cancel --stack {stack}` and run the command again"
    )


# --- reading the locks -------------------------------------------------------------------------


def lock_prefix(project: str, stack: str) -> str:
    return f".pulumi/locks/organization/{project}/{stack}/"


def stack_holders(env: Mapping[str, str], stack: str) -> list[Holder] | None:
    """The holders of the project's `stack` in the backend `env` names (PULUMI_BACKEND_URL);
    None when it cannot be read."""
    url = env.get("PULUMI_BACKEND_URL")
    return read_holders(url, PROJECT, stack, env) if url else None


def read_holders(url: str, project: str, stack: str, env: Mapping[str, str]) -> list[Holder] | None:
    """The holders of the stack's lock in the backend at `url`; None when it cannot be read."""
    parts = urllib.parse.urlsplit(url)
    documents: list[str] | None
    try:
        if parts.scheme == "file":
            documents = _file_locks(parts, lock_prefix(project, stack))
        elif parts.scheme == "s3":
            documents = _s3_locks(parts, lock_prefix(project, stack), env)
        elif parts.scheme in ("postgres", "postgresql"):
            documents = _postgres_locks(parts, lock_prefix(project, stack), env)
        else:
            return None
    except (OSError, ValueError, urllib.error.URLError, subprocess.SubprocessError):
        return None
    if documents is None:
        return None
    holders = []
    for document in documents:
        lock = json.loads(document)
        holders.append(
            Holder(lock["username"], lock["hostname"], int(lock["pid"]), lock["timestamp"])
        )
    return holders


def _file_locks(parts: urllib.parse.SplitResult, prefix: str) -> list[str]:
    folder = Path(urllib.parse.unquote(parts.netloc + parts.path)).expanduser() / prefix
    return [p.read_text() for p in sorted(folder.glob("*.json"))]


def _postgres_locks(
    parts: urllib.parse.SplitResult, prefix: str, env: Mapping[str, str]
) -> list[str] | None:
    psql = shutil.which("psql", path=env.get("PATH"))
    if psql is None:
        return None
    query = urllib.parse.parse_qs(parts.query)
    table = query.pop("table", ["pulumi_state"])[0]
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", table):
        return None
    # psql takes the same URL without Pulumi's own parameter.
    dsn = parts._replace(query=urllib.parse.urlencode(query, doseq=True)).geturl()
    # Pulumi keeps the URL's path (the database's name) in front of every key.
    base = parts.path.strip("/")
    full = f"{base}/{prefix}" if base else prefix
    # Each blob is a JSON document {"data": "<base64 of the blob>"} (backend/diy/postgres).
    sql = f"SELECT data->>'data' FROM {table} WHERE key LIKE $$" + full + "%$$ ORDER BY key"  # noqa: S608
    done = subprocess.run(
        [psql, dsn, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**env, "PGCONNECT_TIMEOUT": "5"},
    )
    if done.returncode != 0:
        return None
    return [base64.b64decode(line).decode() for line in done.stdout.splitlines() if line.strip()]


def _s3_locks(
    parts: urllib.parse.SplitResult, prefix: str, env: Mapping[str, str]
) -> list[str] | None:
    key_id, secret = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not key_id or not secret:
        return None  # a profile or an instance role: only the SDK knows
    query = {k: v[0] for k, v in urllib.parse.parse_qs(parts.query).items()}
    region = query.get("region") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    region = region or "us-east-1"
    endpoint = query.get("endpoint") or f"https://s3.{region}.amazonaws.com"
    if "://" not in endpoint:  # as the CLI reads it: https unless told otherwise
        plain = "true" in (query.get("disableSSL", ""), query.get("disable_https", ""))
        endpoint = ("http://" if plain else "https://") + endpoint
    if not endpoint.startswith(("http://", "https://")):
        return None
    store = _S3(endpoint.rstrip("/"), parts.netloc, region, key_id, secret, env)
    base = parts.path.strip("/")
    full = f"{base}/{prefix}" if base else prefix
    listing = store.get("", {"list-type": "2", "prefix": full}).decode()
    keys = [html.unescape(key) for key in _KEY.findall(listing)]
    return [store.get(key, {}).decode() for key in keys if key.endswith(".json")]


@dataclass(frozen=True)
class _S3:
    """Path-style GETs signed with AWS Signature Version 4."""

    endpoint: str
    bucket: str
    region: str
    key_id: str
    secret: str
    env: Mapping[str, str]

    def get(self, key: str, params: Mapping[str, str]) -> bytes:
        host = urllib.parse.urlsplit(self.endpoint).netloc
        base_path = urllib.parse.urlsplit(self.endpoint).path
        raw = f"{base_path}/{self.bucket}/{key}".replace("//", "/")
        path = urllib.parse.quote(raw, safe="/-_.~")
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}"
            for k, v in sorted(params.items())
        )
        now = datetime.datetime.now(datetime.UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = hashlib.sha256(b"").hexdigest()
        headers = {"host": host, "x-amz-content-sha256": payload, "x-amz-date": stamp}
        if token := self.env.get("AWS_SESSION_TOKEN"):
            headers["x-amz-security-token"] = token
        signed = ";".join(sorted(headers))
        canonical = "\n".join(
            [
                "GET",
                path,
                canonical_query,
                "".join(f"{k}:{headers[k]}\n" for k in sorted(headers)),
                signed,
                payload,
            ]
        )
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        signing = f"AWS4{self.secret}".encode()
        for part in (day, self.region, "s3", "aws4_request"):
            signing = hmac.new(signing, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(signing, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.key_id}/{scope}, SignedHeaders={signed}, "
            f"Signature={signature}"
        )
        url = f"{self.endpoint.split('://')[0]}://{host}{path}"
        if canonical_query:
            url += "?" + canonical_query
        sent = {k: v for k, v in headers.items() if k != "host"}
        # http(s) only: the endpoint's scheme was checked above.
        request = urllib.request.Request(url, headers=sent)  # noqa: S310
        with urllib.request.urlopen(request, timeout=TIMEOUT) as answer:  # noqa: S310
            data: bytes = answer.read()
            return data
