"""Shared plumbing of the SSE benchmarks (sse_latency.py, sse_fanout.py).

* The server under test runs in its own process (``_common.ServerProcess``), so the load
  (subscribers and appender, in the bench process) does not share its event loop: either the
  engine (``spool serve``) or the bare ASGI SSE server below (``python bench/_sse.py bare``),
  the raw limit.
* The bare server: Starlette on uvicorn, no Postgres, no Redis. ``POST /publish`` pushes the body
  as one SSE frame into the in-memory queue of every connected ``GET /stream``, and each stream
  writes its queue out. Same uvicorn, same event loop kind, same framing as the engine.
* ``SubscriberPool``: the subscribers, spread over CLIENT_PROCESSES client processes.
* ``Subscriber``: an SSE client on a raw asyncio stream (no HTTP library per frame): it scans the
  bytes for ``@@<monotonic ns>@@`` markers the appender puts in each event's text, so one regex
  pass over each socket read gives the frames and their send times. A client the server cuts off
  (it fell behind) reconnects with Last-Event-ID, as the SDK does, and is counted.
* ``Appender``: POSTs events over raw keep-alive HTTP/1.1 connections, paced or flat out.
* What both scripts do alike: ``sse_load`` (subscribers and appender, closed after),
  ``run_vs_bare`` (their main: engine and bare server, interleaved runs) and ``log_table``.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import contextlib
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    UNLIMITED,
    HttpConnection,
    ServerProcess,
    add_options,
    cpu_seconds,
    fresh_database,
    install_uvloop,
    log,
    median,
    render_table,
    run_on_services,
    serve_bare,
    setup_session,
    spool_server,
    sse_request,
    start_children,
)

SCRIPT = str(Path(__file__).resolve())
MARKER = re.compile(rb"@@(\d+)@@")
LAST_ID = re.compile(rb"\nid: (\d+)\n")
CUT_OFF = b": cut off"


# --- the server under test, in its own process ---------------------------------------------------


def engine_server(database_url: str, redis_url: str) -> ServerProcess:
    server = spool_server(database_url, redis_url, **UNLIMITED)
    server.quiet = True
    return server


def bare_server() -> ServerProcess:
    return ServerProcess([sys.executable, SCRIPT, "bare"], {"PYTHONPATH": str(REPO_ROOT)},
                         "bare", quiet=True)


# --- the bare ASGI SSE server (run as `python bench/_sse.py bare`) -------------------------------


def bare_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    queues: set[asyncio.Queue[bytes]] = set()
    head = 0

    async def publish(request: Request) -> JSONResponse:
        nonlocal head
        body = await request.body()
        head += 1
        data = b"id: %d\nevent: bench\ndata: %s\n\n" % (head, body)
        for queue in queues:
            queue.put_nowait(data)
        return JSONResponse({"seq": head}, status_code=202)

    async def stream(request: Request) -> StreamingResponse:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        queues.add(queue)

        async def body() -> Any:
            try:
                yield b"retry: 2000\n\n"
                while True:
                    yield await queue.get()
            finally:
                queues.discard(queue)

        return StreamingResponse(body(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    return Starlette(routes=[Route("/publish", publish, methods=["POST"]),
                             Route("/stream", stream, methods=["GET"])])


async def _serve_bare() -> None:
    await serve_bare(bare_app(), "bare SSE server", lifespan="off")


# --- targets: what to subscribe to and where to append -------------------------------------------


@dataclass
class Target:
    """One stream to load: where subscribers connect and how an event is appended."""

    name: str
    host: str
    port: int
    stream_path: str
    headers: dict[str, str]
    append_path: str

    def append_body(self, marker: bytes) -> bytes:
        if self.name == "engine":
            return b'{"content":"%s"}' % marker
        return b'{"text":"%s"}' % marker


async def engine_target(server: ServerProcess) -> Target:
    """A new tenant, member key and session on the engine server."""
    tenant, session = await setup_session(server.base_url)
    auth = {"Authorization": f"Bearer {tenant.key}"}
    return Target("engine", server.host, server.port, f"/v1/sessions/{session}/stream", auth,
                  f"/v1/sessions/{session}/messages")


def bare_target(server: ServerProcess) -> Target:
    return Target("bare", server.host, server.port, "/stream", {}, "/publish")


# --- subscribers ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """What every subscriber of one measurement received (shared, asyncio only)."""

    since_ns: int | None = None  # recording frames appended from this time on
    frames: int = 0  # marked frames received that were appended since ``since_ns``
    latencies_ns: list[int] = field(default_factory=list)
    keep_latencies: bool = True
    cut_offs: int = 0
    reconnects: int = 0
    total_frames: int = 0  # marked frames received at any time


class Subscriber:
    def __init__(self, target: Target, tally: Tally) -> None:
        self.target = target
        self.tally = tally
        self.last_id: bytes | None = None
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await self.task

    async def _run(self) -> None:
        while True:
            cut = await self._connect_and_read()
            if not cut:
                return
            self.tally.reconnects += 1

    async def _connect_and_read(self) -> bool:
        """Read one connection to its end; True when the server cut it off (reconnect)."""
        loop = asyncio.get_running_loop()
        protocol = _SseProtocol(self)
        transport, _ = await loop.create_connection(lambda: protocol, self.target.host,
                                                    self.target.port)
        try:
            headers = dict(self.target.headers)
            if self.last_id is not None:
                headers["Last-Event-ID"] = self.last_id.decode()
            transport.write(sse_request(self.target.host, self.target.port,
                                        self.target.stream_path, headers))
            return await protocol.done
        finally:
            transport.close()


class _SseProtocol(asyncio.Protocol):
    """One stream's bytes, handled in the transport's callback (no reader task per frame).
    Chunked transfer coding is left in place: chunk-size lines sit between frames and never look
    like a marker, an id line or a frame end ("\\n\\n")."""

    def __init__(self, subscriber: Subscriber) -> None:
        self.subscriber = subscriber
        self.tally = subscriber.tally
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.head = b""
        self.in_body = False
        self.pending = b""
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's are not asyncio.Transport subclasses

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(False)

    def data_received(self, chunk: bytes) -> None:
        if not self.in_body:
            self.head += chunk
            split = self.head.find(b"\r\n\r\n")
            if split < 0:
                return
            head, chunk = self.head[:split], self.head[split + 4:]
            if not head.startswith(b"HTTP/1.1 200"):
                if not self.done.done():
                    self.done.set_exception(RuntimeError(f"stream refused: {head[:200]!r}"))
                return
            self.in_body = True
            self.subscriber.ready.set()
        now = time.monotonic_ns()
        data = self.pending + chunk if self.pending else chunk
        end = data.rfind(b"\n\n")
        if end < 0:
            self.pending = data
            return
        if end + 2 == len(data):
            complete, self.pending = data, b""
        else:
            complete, self.pending = data[: end + 2], data[end + 2:]
        tally = self.tally
        stamps = MARKER.findall(complete)
        if stamps:
            tally.total_frames += len(stamps)
            since = tally.since_ns
            if since is not None:
                recorded = [now - stamp for stamp in map(int, stamps) if stamp >= since]
                tally.frames += len(recorded)
                if tally.keep_latencies:
                    tally.latencies_ns.extend(recorded)
            ids = LAST_ID.findall(complete)
            if ids:
                self.subscriber.last_id = ids[-1]
        if CUT_OFF in complete:
            tally.cut_offs += 1
            if not self.done.done():
                self.done.set_result(True)
            assert self.transport is not None
            self.transport.close()


async def connect_subscribers(target: Target, tally: Tally, count: int) -> list[Subscriber]:
    """``count`` connected subscribers (connected in waves, each waits for its 200)."""
    subscribers: list[Subscriber] = []
    for first in range(0, count, 100):
        wave = [Subscriber(target, tally) for _ in range(min(100, count - first))]
        for subscriber in wave:
            subscriber.start()
        async with asyncio.timeout(60):
            await asyncio.gather(*(subscriber.ready.wait() for subscriber in wave))
        subscribers.extend(wave)
    return subscribers


async def stop_subscribers(subscribers: list[Subscriber]) -> None:
    await asyncio.gather(*(subscriber.stop() for subscriber in subscribers))


# --- subscribers in client processes ------------------------------------------------------------

CLIENT_PROCESSES = 2


class SubscriberPool:
    """``count`` subscribers spread over ``processes`` client processes (``python bench/_sse.py
    subscribers``), so that reading the frames is not held to one core. Line protocol on the
    child's stdin/stdout: ``ready``; ``since NS`` -> ``ok``; ``report`` -> ``report JSON NBYTES``
    then NBYTES of int64 latencies; ``stop``."""

    def __init__(self, target: Target, count: int, processes: int, keep_latencies: bool) -> None:
        self.target = target
        self.shares = [count // processes + (1 if i < count % processes else 0)
                       for i in range(processes)]
        self.shares = [share for share in self.shares if share]
        self.keep_latencies = keep_latencies
        self.children: list[asyncio.subprocess.Process] = []

    async def start(self) -> None:
        spec, keep = json.dumps(self.target.__dict__), "1" if self.keep_latencies else "0"
        await start_children(
            self.children, [[SCRIPT, "subscribers", spec, str(share), keep]
                            for share in self.shares], "subscriber", limit=1 << 20)

    async def _ask(self, child: asyncio.subprocess.Process, command: str) -> bytes:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(command.encode() + b"\n")
        await child.stdin.drain()
        return await child.stdout.readline()

    async def since(self, since_ns: int) -> None:
        for child in self.children:
            await self._ask(child, f"since {since_ns}")

    async def frames(self) -> tuple[int, int]:
        """(recorded frames, all marked frames) received so far, summed over the children."""
        recorded = total = 0
        for child in self.children:
            _, frames, every = (await self._ask(child, "frames")).split()
            recorded, total = recorded + int(frames), total + int(every)
        return recorded, total

    async def report(self) -> Tally:
        """The children's tallies summed (latencies concatenated)."""
        total = Tally()
        for child in self.children:
            assert child.stdout is not None
            _, body, nbytes = (await self._ask(child, "report")).split(b" ")
            counts = json.loads(body)
            raw = await child.stdout.readexactly(int(nbytes))
            total.frames += counts["frames"]
            total.total_frames += counts["total_frames"]
            total.cut_offs += counts["cut_offs"]
            total.reconnects += counts["reconnects"]
            total.latencies_ns.extend(array.array("q", raw))
        return total

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(child.pid) for child in self.children)

    async def stop(self) -> None:
        for child in self.children:
            assert child.stdin is not None
            with contextlib.suppress(OSError, ConnectionError):
                child.stdin.write(b"stop\n")
                await child.stdin.drain()
        for child in self.children:
            try:
                async with asyncio.timeout(30):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()
        self.children = []


async def _serve_subscribers(spec: str, count: int, keep_latencies: bool) -> None:
    target = Target(**json.loads(spec))
    tally = Tally(keep_latencies=keep_latencies)
    subscribers = await connect_subscribers(target, tally, count)
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    out = sys.stdout.buffer
    out.write(b"ready\n")
    out.flush()
    try:
        while line := (await commands.readline()).split():
            if line[0] == b"since":
                tally.since_ns = int(line[1])
                out.write(b"ok\n")
            elif line[0] == b"frames":
                out.write(b"frames %d %d\n" % (tally.frames, tally.total_frames))
            elif line[0] == b"report":
                raw = array.array("q", tally.latencies_ns).tobytes()
                counts = {"frames": tally.frames, "total_frames": tally.total_frames,
                          "cut_offs": tally.cut_offs, "reconnects": tally.reconnects}
                out.write(b"report %s %d\n" % (json.dumps(counts, separators=(",", ":"))
                                                 .encode(), len(raw)))
                out.write(raw)
            elif line[0] == b"stop":
                break
            out.flush()
    finally:
        await stop_subscribers(subscribers)


# --- appender ------------------------------------------------------------------------------------


class Appender:
    """POSTs one event per request, each carrying ``@@<monotonic ns at submit>@@``, over at most
    ``connections`` keep-alive connections."""

    def __init__(self, target: Target, connections: int) -> None:
        self.target = target
        self.connections = connections
        self.opened = 0
        self.idle: list[HttpConnection] = []
        self.free = asyncio.Semaphore(connections)
        headers = {**target.headers, "Content-Type": "application/json",
                   "Host": f"{target.host}:{target.port}"}
        self.request_head = (f"POST {target.append_path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items())).encode()
        self.sent = 0
        self.errors = 0
        self.post_ns: list[int] = []  # how long each POST took (submit -> response)

    async def append_one(self) -> None:
        async with self.free:
            conn = self.idle.pop() if self.idle else HttpConnection(
                *await asyncio.open_connection(self.target.host, self.target.port))
            submitted = time.monotonic_ns()
            marker = b"@@%d@@" % submitted
            status = await conn.post(self.request_head, self.target.append_body(marker))
            self.post_ns.append(time.monotonic_ns() - submitted)
            self.idle.append(conn)
        if status == 202:
            self.sent += 1
        else:
            self.errors += 1

    async def paced(self, rate: float, seconds: float, max_in_flight: int) -> float:
        """Submit at ``rate`` events/s for ``seconds`` (open loop, at most ``max_in_flight``
        outstanding: beyond that the server is not keeping up and submissions slip).
        Returns the achieved submission rate."""
        interval = 1.0 / rate
        slots = asyncio.Semaphore(max_in_flight)
        tasks: set[asyncio.Task[None]] = set()
        start = time.monotonic()
        submitted = 0

        async def one() -> None:
            try:
                await self.append_one()
            finally:
                slots.release()

        while True:
            now = time.monotonic()
            if now - start >= seconds:
                break
            due = int((now - start) / interval) + 1 - submitted
            for _ in range(due):
                await slots.acquire()
                task = asyncio.create_task(one())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                submitted += 1
            await asyncio.sleep(max(0.0, start + submitted * interval - time.monotonic()))
        elapsed = time.monotonic() - start
        await asyncio.gather(*tasks)
        return submitted / elapsed

    async def flat_out(self, workers: int, stop: asyncio.Event) -> None:
        """``workers`` closed loops, each appending as soon as its previous append returned."""

        async def loop() -> None:
            while not stop.is_set():
                await self.append_one()

        await asyncio.gather(*(loop() for _ in range(workers)))

    async def aclose(self) -> None:
        for conn in self.idle:
            conn.writer.close()
        self.idle = []


# --- measurement helpers -------------------------------------------------------------------------


async def wait_quiet(pool: SubscriberPool, expected: int, limit: float) -> None:
    """Until ``expected`` recorded frames have arrived, or nothing arrived for 1 s, or ``limit``
    seconds passed."""
    deadline = time.monotonic() + limit
    last, last_change = (await pool.frames())[0], time.monotonic()
    while last < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        frames = (await pool.frames())[0]
        if frames != last:
            last, last_change = frames, time.monotonic()
        elif time.monotonic() - last_change > 1.0:
            return


@dataclass
class Cpu:
    """Cores used during a measurement: the server, the appender (this process) and the
    subscriber processes."""

    wall: float
    server: float
    appender: float
    subscribers: float

    def figures(self) -> dict[str, float]:
        """The cores as the SSE scripts report them."""
        return {
            "server_cores": self.server,
            "client_cores": self.appender + self.subscribers,
            "subscriber_procs_cores": self.subscribers,
            "appender_proc_cores": self.appender,
        }


@contextlib.asynccontextmanager
async def sse_load(target: Target, subscribers: int, client_procs: int, *,
                   keep_latencies: bool, connections: int
                   ) -> AsyncIterator[tuple[SubscriberPool, Appender]]:
    """The subscribers, connected, and an appender of at most ``connections`` connections; both
    closed on leaving."""
    pool = SubscriberPool(target, subscribers, client_procs, keep_latencies=keep_latencies)
    await pool.start()
    appender = Appender(target, connections)
    try:
        yield pool, appender
    finally:
        await appender.aclose()
        await pool.stop()


async def with_cpu(
    server: ServerProcess, pool: SubscriberPool, work: Callable[[], Awaitable[Any]]
) -> tuple[Any, Cpu]:
    """Run ``work``; return its result and the CPU used meanwhile."""
    before = (server.cpu_seconds(), time.process_time(), pool.cpu_seconds())
    start = time.monotonic()
    result = await work()
    wall = time.monotonic() - start
    after = (server.cpu_seconds(), time.process_time(), pool.cpu_seconds())
    cores = [(b - a) / wall for a, b in zip(before, after, strict=True)]
    return result, Cpu(wall, *cores)


async def engine_vs_bare(
    admin_url: str, redis_url: str, runs: int,
    measure: Callable[[ServerProcess, Target], Awaitable[dict[str, Any]]],
    describe: Callable[[dict[str, Any]], str],
) -> dict[str, list[dict[str, Any]]]:
    """Start `spool serve` (on a fresh database) and the bare server, then measure both
    ``runs`` times, interleaved; returns every run's result per server."""
    samples: dict[str, list[dict[str, Any]]] = {"engine": [], "bare": []}

    async def measure_one(name: str, server: ServerProcess, target: Target) -> None:
        result = await measure(server, target)
        samples[name].append(result)
        log(f"  {name + ':':7} {describe(result)}")

    async with fresh_database(admin_url, schema=False) as database_url:
        engine = await engine_server(database_url, redis_url).start()
        bare = await bare_server().start()
        try:
            for run in range(1, runs + 1):
                log(f"run {run}/{runs}")
                await measure_one("engine", engine, await engine_target(engine))
                await measure_one("bare", bare, bare_target(bare))
        finally:
            await asyncio.to_thread(engine.stop)
            await asyncio.to_thread(bare.stop)
    return samples


def run_vs_bare(
    parser: argparse.ArgumentParser,
    measure: Callable[[ServerProcess, Target, argparse.Namespace], Awaitable[dict[str, Any]]],
    describe: Callable[[dict[str, Any]], str],
    build_result: Callable[[dict[str, list[dict[str, Any]]], argparse.Namespace],
                           dict[str, Any]],
    print_table: Callable[[dict[str, Any]], None],
) -> None:
    """The main of the SSE scripts: ``parser`` (the script's own options) gets the options of
    every SSE script (how long, how many client processes, how many runs: what ``run_facts``
    reports), then ``engine_vs_bare`` runs on the services ``--runs`` times, the samples summed
    up by ``build_result`` and written out."""
    add_options(parser, "seconds", "warmup")
    add_client_procs(parser)
    add_options(parser, "runs")
    args = parser.parse_args()

    async def bench(admin_url: str, redis_url: str) -> dict[str, Any]:
        samples = await engine_vs_bare(
            admin_url, redis_url, args.runs,
            lambda server, target: measure(server, target, args), describe,
        )
        return build_result(samples, args)

    run_on_services(lambda found: bench(*found), print_table)


# --- what the SSE scripts report alike -----------------------------------------------------------


def add_client_procs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--client-procs", type=int, default=CLIENT_PROCESSES,
                        help="processes the subscribers are spread over")


def log_table(result: dict[str, Any], load: str, header: list[str],
              figures: Callable[[dict[str, Any]], list[str]]) -> None:
    """The table of the SSE scripts on stderr: one row per server, its ``figures`` (under
    ``header``) then the cores used, below a line saying the ``load`` and how it was run."""
    rows = []
    for name in ("engine", "bare"):
        r = result[name]
        rows.append([name, *figures(r), f"{r['server_cores']:.2f}",
                     f"{r['subscriber_procs_cores']:.2f}+{r['appender_proc_cores']:.2f}"])
    log("")
    log(f"{load}, "
        f"{result['client_processes']} client processes "
        f"({result['client_processes'] - 1} reading the streams, 1 appending), "
        f"{result['cpus']} CPUs "
        f"(medians of {result['runs']} runs)")
    log(render_table(["server", *header, "server cores", "client cores (subs+appender)"], rows))


def medians(samples: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Per server, the median of each figure over the runs."""
    return {name: {key: round(median([run[key] for run in runs]), 3) for key in runs[0]}
            for name, runs in samples.items()}


def run_facts(samples: dict[str, list[dict[str, Any]]], args: argparse.Namespace
              ) -> dict[str, Any]:
    """Every run's figures and how they were measured."""
    return {
        "samples": {name: [{k: round(v, 3) for k, v in run.items()} for run in runs]
                    for name, runs in samples.items()},
        "client_processes": args.client_procs + 1,
        "server_processes": 1,
        "cpus": os.cpu_count(),
        "runs": args.runs,
        "seconds": args.seconds,
        "warmup": args.warmup,
    }


if __name__ == "__main__":
    if sys.argv[1:] == ["bare"]:
        with contextlib.suppress(KeyboardInterrupt):
            install_uvloop()  # the event loop `spool serve` runs on, for a like-for-like limit
            asyncio.run(_serve_bare())
    elif sys.argv[1:2] == ["subscribers"]:
        install_uvloop()
        asyncio.run(_serve_subscribers(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"))
    else:
        sys.exit("usage: python bench/_sse.py bare   (the bare ASGI SSE server)")


