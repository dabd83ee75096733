"""What a shared state backend costs per `pulumi up`, against the local directory.

One Docker stack (the `single` topology: an image, two networks, five containers) per backend,
deployed once on each of file:// (a local directory), s3:// (S3Proxy) and postgres://
(PostgreSQL), the servers of tools/backends (`tools/backends/backends start` first). Then, in
rounds that take the backends in turn (so that a machine whose load changes treats them alike),
a no-change `pulumi up --skip-preview` and a `pulumi preview` of each stack. Prints the median
of each, and its ratio to file://; the stacks are destroyed at the end.

The difference is the state's reads and writes: a no-change `up` reads the stack, takes and
releases its lock, and writes the checkpoint, a backup and a history entry; a preview reads it;
`pulumi stack export` (no program, no plugin) is the state's read alone.

Run: .venv/bin/python benchmarks/backend_bench.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.services_env import docker_env, toolchain_env  # noqa: E402
from tests.docker_client import BASE_IMAGE, free_port  # noqa: E402
from tests.engine.repo_program import copy_program  # noqa: E402

PASSPHRASE = "calculator-lab-bench"  # noqa: S105 (the benchmark's own throwaway stacks)


@dataclass
class Bench:
    name: str
    url: str
    env: dict[str, str]
    workdir: Path
    stack: str

    def pulumi(self, *args: str) -> float:
        started = time.monotonic()
        done = subprocess.run(
            ["pulumi", *args, "--stack", self.stack, "--non-interactive"],
            cwd=self.workdir,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        if done.returncode != 0:
            raise SystemExit(f"{self.name}: pulumi {' '.join(args)} failed:\n{done.stderr}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    servers: dict[str, Any] = json.loads(
        subprocess.run(
            [str(REPO / "tools" / "backends" / "backends"), "env", "--json"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    for kind in ("s3", "postgres"):
        if not servers[kind]["running"]:
            raise SystemExit(f"{kind}: not running; tools/backends/backends start {kind}")
    base = {**os.environ, **toolchain_env(), **docker_env()}
    base |= {"PULUMI_CONFIG_PASSPHRASE": PASSPHRASE, "PULUMI_SKIP_UPDATE_CHECK": "true"}
    tag = secrets.token_hex(3)
    scratch = Path(tempfile.mkdtemp(prefix="backend-bench-"))
    base["PULUMI_CREDENTIALS_PATH"] = str(scratch)
    s3 = servers["s3"]
    head, query = s3["url"].split("?", 1)
    urls = {
        "file": (scratch / "state").as_uri(),
        "s3": f"{head}/bench-{tag}?{query}",
        "postgres": f"{servers['postgres']['url']}&table=bench_{tag}",
    }
    (scratch / "state").mkdir()
    keys = {k: s3[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    benches = []
    for index, (name, url) in enumerate(urls.items()):
        workdir = copy_program(scratch / name)
        stack = f"bb{tag}{name[0]}"
        config = {
            "target": "docker",
            "topology": "single",
            "dockerBaseImage": BASE_IMAGE,
            "dockerHostPort": free_port(),
            "networkCidr": f"10.{240 + index}.{secrets.randbelow(250)}.0/24",
        }
        document = {"config": {f"calculator-lab:{k}": v for k, v in config.items()}}
        (workdir / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(document))
        env = {**base, **(keys if name == "s3" else {}), "PULUMI_BACKEND_URL": url}
        benches.append(Bench(name, url, env, workdir, stack))
    ups: dict[str, list[float]] = {b.name: [] for b in benches}
    previews: dict[str, list[float]] = {b.name: [] for b in benches}
    exports: dict[str, list[float]] = {b.name: [] for b in benches}
    try:
        for bench in benches:
            bench.pulumi("stack", "init", "--secrets-provider", "passphrase")
            seconds = bench.pulumi("up", "--yes", "--skip-preview")
            print(f"{bench.name}: first up {seconds:.1f}s", flush=True)
        for number in range(rounds):
            for bench in benches:
                ups[bench.name].append(bench.pulumi("up", "--yes", "--skip-preview"))
                previews[bench.name].append(bench.pulumi("preview"))
                exports[bench.name].append(bench.pulumi("stack", "export"))
            print(f"round {number + 1}/{rounds} done", flush=True)
    finally:
        destroy = ["pulumi", "destroy", "--yes", "--skip-preview", "--remove", "--non-interactive"]
        for bench in benches:
            subprocess.run(
                [*destroy, "--stack", bench.stack],
                cwd=bench.workdir,
                env=bench.env,
                capture_output=True,
                check=False,
            )
        shutil.rmtree(scratch, ignore_errors=True)
    up_file = statistics.median(ups["file"])
    preview_file = statistics.median(previews["file"])
    print(f"\n{rounds} rounds, median seconds (ratio to file://); load {os.getloadavg()[0]:.1f}")
    export_file = statistics.median(exports["file"])
    print(f"{'backend':<12} {'up (no change)':>18} {'preview':>18} {'stack export':>18}")
    for bench in benches:
        up = statistics.median(ups[bench.name])
        preview = statistics.median(previews[bench.name])
        export = statistics.median(exports[bench.name])
        print(
            f"{bench.name + '://':<12} {up:>9.2f} ({up / up_file:4.2f}x) "
            f"{preview:>9.2f} ({preview / preview_file:4.2f}x) "
            f"{export:>9.2f} ({export / export_file:4.2f}x)"
        )


if __name__ == "__main__":
    main()
