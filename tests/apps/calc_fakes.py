"""Misbehaving stand-ins for a service: one that stalls, one that trickles, one that is slow."""

from __future__ import annotations

import asyncio
import socket
import threading
from decimal import Decimal


class StalledService:
    """Accepts connections and never answers: the front end must time out, not hang."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.held: list[socket.socket] = []
        self.trickle = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.held.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        # A valid status line, one byte every 0.3 s: each read succeeds, the answer never ends.
        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n5":
            if self._stop.wait(0.3):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        for conn in self.held:
            conn.close()


class SlowSum:
    """A correct sum service that takes ``delay`` seconds per call, counting calls in flight.

    Like any HTTP/1.1 server it answers pipelined requests in order, but it works on them
    concurrently (as an operation service may: the operations are pure), so ``peak`` counts the
    calls the front end had in flight at once, however it spread them over connections.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.in_flight = 0
        self.peak = 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.port = 0

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            server = self.loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", 0))
            self.port = server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()
            server.close()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        started.wait(5)
        self.url = f"http://127.0.0.1:{self.port}"

    async def _answer(self, body: bytes) -> bytes:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        a, b = (Decimal(part) for part in body.decode().split())
        answer = f"{a + b}\n".encode()
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        answers: asyncio.Queue[asyncio.Task[bytes] | None] = asyncio.Queue()

        async def write_in_order() -> None:
            while (task := await answers.get()) is not None:
                writer.write(await task)

        writing = asyncio.create_task(write_in_order())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.decode("latin-1").split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await reader.readexactly(length)
                answers.put_nowait(asyncio.create_task(self._answer(body)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            answers.put_nowait(None)
            await writing
            writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
