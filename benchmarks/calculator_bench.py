"""Benchmark of the calculator on loopback: latency by tree shape and evaluation mode, throughput.

Starts the five real processes on free ports (as the e2e tests do), then measures:
- one loopback round trip to a service (a kept-alive POST "2 3" to sum), the unit of the floor;
- the latency of a balanced expression of 64 operands (depth 6) and of a chain of the same 63
  operations (depth 63), each evaluated concurrently and sequentially;
- the throughput of the balanced expression at 1, 8 and 32 concurrent clients.
The floor of an expression is its depth times one round trip: no evaluation can beat it.

Run: .venv/bin/python benchmarks/calculator_bench.py [--repeat N] [--seconds S]
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "apps")]

from calculator.arith import format_number  # noqa: E402
from calculator.evaluate import calculate  # noqa: E402
from calculator.parser import parse  # noqa: E402

from tests.apps.calc_cluster import Cluster  # noqa: E402

OPERATORS = "+*-/"


def balanced(operands: list[str]) -> str:
    level, turn = operands, 0
    while len(level) > 1:
        pairs = []
        for i in range(0, len(level), 2):
            pairs.append(f"({level[i]}{OPERATORS[turn % 4]}{level[i + 1]})")
            turn += 1
        level = pairs
    return level[0]


def chain(operands: list[str]) -> str:
    # Explicit parentheses: without them precedence would regroup the products and quotients.
    text = operands[0]
    for turn, operand in enumerate(operands[1:]):
        text = f"({text}{OPERATORS[turn % 4]}{operand})"
    return text


class Client:
    """One kept-alive connection, like a browser or a curl loop would reuse."""

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.connection = http.client.HTTPConnection(host, int(port), timeout=30)

    def post(self, body: str, path: str = "/") -> str:
        self.connection.request("POST", path, body=body.encode())
        response = self.connection.getresponse()
        text = response.read().decode()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {text.strip()}")
        return text.strip()

    def close(self) -> None:
        self.connection.close()


def timings(action: Callable[[], object], repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        action()
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def throughput(url: str, body: str, clients: int, seconds: float) -> tuple[float, float]:
    """Requests per second and median latency with ``clients`` closed-loop clients."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def loop() -> None:
        client = Client(url)
        mine = []
        try:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                client.post(body)
                mine.append(time.perf_counter() - started)
        except Exception as error:  # reported below: a benchmark must not hide failures
            errors.append(str(error))
        finally:
            client.close()
            with lock:
                latencies.extend(mine)

    threads = [threading.Thread(target=loop) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} client(s) failed, first: {errors[0]}")
    return len(latencies) / elapsed, statistics.median(latencies)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30, help="samples per latency figure")
    parser.add_argument("--seconds", type=float, default=5.0, help="duration per throughput run")
    args = parser.parse_args()

    operands = [str(i) for i in range(1, 65)]
    shapes = {"balanced": balanced(operands), "chain": chain(operands)}
    depth = {name: parse(text).depth for name, text in shapes.items()}
    expected = {name: format_number(calculate(text)) for name, text in shapes.items()}

    cluster = Cluster()
    try:
        sum_client = Client(cluster.services["sum"].url)
        round_trip = statistics.median(timings(lambda: sum_client.post("2 3"), repeat=300))
        sum_client.close()

        front = Client(cluster.url)
        latency: dict[tuple[str, str], float] = {}
        for name, text in shapes.items():
            for mode in ("concurrent", "sequential"):
                answer = front.post(text, f"/?mode={mode}")
                if answer != expected[name]:
                    raise RuntimeError(f"{name}/{mode}: got {answer}, expected {expected[name]}")
                path = f"/?mode={mode}"
                samples = timings(partial(front.post, text, path), args.repeat)
                latency[name, mode] = statistics.median(samples)
        front.close()

        rates = {
            clients: throughput(cluster.url, shapes["balanced"], clients, args.seconds)
            for clients in (1, 8, 32)
        }
    finally:
        cluster.stop()

    print("calculator benchmark (loopback, five processes, medians)")
    print(f"one loopback round trip (POST '2 3' to sum, kept alive): {ms(round_trip)}")
    print()
    print(f"{'expression':<26}{'depth':>6}{'concurrent':>14}{'sequential':>14}{'conc/seq':>10}")
    for name in shapes:
        conc, seq = latency[name, "concurrent"], latency[name, "sequential"]
        label = f"{name} (64 operands)"
        print(f"{label:<26}{depth[name]:>6}{ms(conc):>14}{ms(seq):>14}{conc / seq:>10.2f}")
    print()
    for mode in ("concurrent", "sequential"):
        ratio = latency["balanced", mode] / latency["chain", mode]
        print(f"balanced/chain, {mode}: {ratio:.2f}")
    print()
    for name in shapes:
        floor = depth[name] * round_trip
        got = latency[name, "concurrent"]
        print(
            f"floor {name}: {depth[name]} x round trip = {ms(floor)}; "
            f"concurrent is {got / floor:.2f} x the floor"
        )
    print()
    print("throughput, balanced expression (63 operations per request), concurrent mode:")
    for clients, (rate, median) in rates.items():
        print(
            f"  {clients:>2} client(s): {rate:8.1f} requests/s = {rate * 63:8.0f} operations/s, "
            f"median latency {ms(median)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
