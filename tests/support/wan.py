"""A WAN emulator for tests and benches: a loopback TCP proxy that adds latency and caps bandwidth.

There is no kernel netem on these machines and no well-kept Python package does this (toxiproxy needs its Go
server), so this is a small asyncio proxy. Per direction of each connection a pump reads what the peer sent,
waits for the bandwidth it would take on the wire (a per-connection cap and a cap shared by every connection of
the link), then hands it to a delay line that delivers it RTT/2 later: throughput is kept while the data is in
flight, as on a real long link. A new connection pays one more RTT before its first byte goes upstream (the TCP
handshake), so a request's first response byte arrives about 2 RTT after connect().

Faults for the next connections: ``cut_after(n)`` closes a connection after n bytes went downstream,
``stall(after, seconds)`` stops forwarding for a while, ``down()`` drops every connection and refuses new ones.

In-process (a thread with its own event loop; fine for tests with small files)::

    with WanProxy(("127.0.0.1", port), rtt=0.1, conn_rate=10e6, link_rate=80e6) as wan:
        url = f"http://127.0.0.1:{wan.port}/..."

As a separate process (benches: keeps the proxy off the measured process's GIL)::

    python tests/support/wan.py --target 127.0.0.1:8080 --rtt 0.1 --conn-rate 10e6 --link-rate 80e6
    # prints "listening 127.0.0.1:PORT", runs until killed
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

READ = 64 * 1024  # bytes per read from a socket
SLACK = 0.005  # seconds a late pump may catch up in a burst, so sleep jitter does not cost throughput


class _Cap:
    """A serial link of ``rate`` bytes/s: when a chunk offered now has finished crossing it."""

    def __init__(self, rate: float | None):
        self.rate, self.free = rate, 0.0

    def cross(self, n: int, now: float) -> float:
        if not self.rate:
            return now
        start = max(self.free, now - SLACK)
        self.free = start + n / self.rate
        return self.free


@dataclass
class _Fault:
    cut_after: int | None = None
    stall_after: int | None = None
    stall: float = 0.0


class WanProxy:
    def __init__(self, target: tuple[str, int], *, rtt: float = 0.0, conn_rate: float | None = None,
                 link_rate: float | None = None, port: int = 0):
        self.target, self.rtt, self.conn_rate = target, rtt, conn_rate
        self.link = {"up": _Cap(link_rate), "down": _Cap(link_rate)}
        self.bytes_down = 0  # server → client bytes delivered, all connections
        self.bytes_onto_link = 0  # server → client bytes that entered the link (delivered or lost in flight)
        self.bytes_up = 0
        self.connections = 0
        self._faults: collections.deque[_Fault] = collections.deque()
        self._writers: set[asyncio.StreamWriter] = set()
        self._down = False
        self._port = port
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- control (any thread)

    def start(self) -> WanProxy:
        self._thread = threading.Thread(target=self._run, name="wan-proxy", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the WAN proxy did not start")
        return self

    def close(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def __enter__(self) -> WanProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def port(self) -> int:
        return self._port

    def cut_after(self, n: int, times: int = 1) -> None:
        """Close each of the next ``times`` connections after it delivered ``n`` bytes downstream."""
        self._faults.extend(_Fault(cut_after=n) for _ in range(times))

    def stall(self, after: int, seconds: float, times: int = 1) -> None:
        """Stop forwarding downstream for ``seconds`` after ``after`` bytes, on each of the next connections."""
        self._faults.extend(_Fault(stall_after=after, stall=seconds) for _ in range(times))

    def down(self) -> None:
        """The link dies: drop every open connection and refuse new ones."""
        self._down = True
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._drop_all)

    # ---------------------------------------------------------------- the event loop

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
        self._port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            self._drop_all()

    def _drop_all(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def _serve(self, c_reader, c_writer) -> None:
        self.connections += 1
        if self._down:
            c_writer.transport.abort()
            return
        fault = self._faults.popleft() if self._faults else _Fault()
        handshake_done = time.monotonic() + self.rtt
        try:
            s_reader, s_writer = await asyncio.open_connection(*self.target)
        except OSError:
            c_writer.transport.abort()
            return
        self._writers.update((c_writer, s_writer))
        conn = {"up": _Cap(self.conn_rate), "down": _Cap(self.conn_rate)}
        try:
            await asyncio.gather(
                self._pump(c_reader, s_writer, conn["up"], self.link["up"], "up", _Fault(), handshake_done),
                self._pump(s_reader, c_writer, conn["down"], self.link["down"], "down", fault, 0.0),
            )
        finally:
            for w in (c_writer, s_writer):
                self._writers.discard(w)
                w.transport.abort()

    async def _pump(self, reader, writer, conn: _Cap, link: _Cap, direction: str, fault: _Fault,
                    not_before: float) -> None:
        """Read, pay the wire time, and queue for delivery RTT/2 later; a second task writes."""
        line: asyncio.Queue = asyncio.Queue()
        deliver = asyncio.ensure_future(self._deliver(line, writer, direction))
        passed = 0
        try:
            while True:
                limit = READ
                if fault.cut_after is not None:
                    limit = min(limit, fault.cut_after - passed)
                if fault.stall_after is not None and fault.stall:
                    limit = min(limit, fault.stall_after - passed) or READ
                if limit <= 0:
                    break
                data = await reader.read(limit)
                if not data:
                    break
                now = time.monotonic()
                done = max(conn.cross(len(data), now), link.cross(len(data), now), not_before)
                if done > now:
                    await asyncio.sleep(done - now)
                line.put_nowait((done + self.rtt / 2, data))
                passed += len(data)
                if direction == "down":
                    self.bytes_onto_link += len(data)
                if fault.stall_after is not None and fault.stall and passed >= fault.stall_after:
                    await asyncio.sleep(fault.stall)
                    fault.stall = 0.0
        except (ConnectionError, OSError):
            pass
        line.put_nowait((0.0, None))
        if fault.cut_after is not None and passed >= fault.cut_after:
            await deliver
            writer.transport.abort()
            return
        await deliver

    async def _deliver(self, line: asyncio.Queue, writer, direction: str) -> None:
        try:
            while True:
                at, data = await line.get()
                if data is None:
                    break
                wait = at - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
                if direction == "down":
                    self.bytes_down += len(data)
                else:
                    self.bytes_up += len(data)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError, RuntimeError):
            pass


# ---------------------------------------------------------------- as a separate process


class WanProcess:
    """The proxy in a child process (``python wan.py``): ``.port``, ``.close()``."""

    def __init__(self, target: tuple[str, int], *, rtt: float = 0.0, conn_rate: float | None = None,
                 link_rate: float | None = None):
        args = [sys.executable, __file__, "--target", f"{target[0]}:{target[1]}", "--rtt", str(rtt)]
        if conn_rate:
            args += ["--conn-rate", str(conn_rate)]
        if link_rate:
            args += ["--link-rate", str(link_rate)]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening "):
            self.proc.kill()
            raise RuntimeError(f"the WAN proxy did not start: {line!r}")
        self.port = int(line.rsplit(":", 1)[1])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def __enter__(self) -> WanProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", required=True, help="HOST:PORT to forward to")
    ap.add_argument("--port", type=int, default=0, help="port to listen on (default: any free one)")
    ap.add_argument("--rtt", type=float, default=0.0, help="round-trip time added, seconds")
    ap.add_argument("--conn-rate", type=float, help="bytes/s per connection and direction")
    ap.add_argument("--link-rate", type=float, help="bytes/s shared by all connections, per direction")
    a = ap.parse_args(argv)
    host, port = a.target.rsplit(":", 1)
    proxy = WanProxy((host, int(port)), rtt=a.rtt, conn_rate=a.conn_rate, link_rate=a.link_rate, port=a.port)
    proxy.start()
    print(f"listening 127.0.0.1:{proxy.port}", flush=True)
    try:
        proxy._thread.join()
    except KeyboardInterrupt:
        proxy.close()


if __name__ == "__main__":
    main()
