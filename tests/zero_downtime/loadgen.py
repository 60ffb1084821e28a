"""A bounded HTTP load generator for switches under load: threads, http.client, a record.

Every request opens a new TCP connection (`Connection: close`): what a switch can break
is the listening socket (a refused or reset connection, a request queued past its
timeout), and a fresh connection per request is what tests that. A keep-alive client
would mostly test whether the old server closes idle connections politely, which every
server does at shutdown and every client must retry anyway.

Bounded in every direction: a fixed number of threads, a small timeout per request, an
Event or a maximum duration to stop, and an optional pace per thread so the client does
not take the whole (2-core) machine from the processes it measures. Each request is one
Sample: when it started (monotonic), how it ended (`ok` or an error kind), the release
ID in the body, and its latency.

Also used by bench/switch_bench.py, so it imports nothing from the test suite.
"""

from __future__ import annotations

import errno
import http.client
import itertools
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.helpers import wait_until

RELEASE_ID = re.compile(rb"\bv\d+\b")


@dataclass(frozen=True)
class Sample:
    start: float  # time.monotonic() when the connection was opened
    kind: str  # "ok", or an error kind: refused, reset, timeout, http-503, ...
    release: str | None  # the first `v<N>` in the body, for ok responses
    latency: float  # seconds from connect to the last byte (or to the error)

    @property
    def end(self) -> float:
        return self.start + self.latency

    @property
    def ok(self) -> bool:
        return self.kind == "ok"


def error_kind(exc: BaseException) -> str:
    """A short, stable name for how a request failed."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "disconnected"
    if isinstance(exc, http.client.HTTPException):
        return "bad-response"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno.errorcode.get(exc.errno, str(exc.errno)).lower()
    return type(exc).__name__


def fetch(host: str, port: int, path: str, timeout: float) -> Sample:
    """One GET over a new connection; never raises for a network error."""
    start = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        return Sample(start, error_kind(exc), None, time.monotonic() - start)
    finally:
        conn.close()
    latency = time.monotonic() - start
    if resp.status != 200:
        return Sample(start, f"http-{resp.status}", None, latency)
    match = RELEASE_ID.search(body)
    return Sample(start, "ok", match.group().decode() if match else None, latency)


@dataclass
class LoadGen:
    """`threads` clients requesting GET path in a loop until stop() or max_duration."""

    port: int
    host: str = "127.0.0.1"
    path: str = "/"
    threads: int = 4
    timeout: float = 5.0
    max_duration: float = 120.0
    pace: float = 0.0  # minimum seconds between two requests of one thread
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _workers: list[threading.Thread] = field(default_factory=list)
    started_at: float = 0.0

    def start(self) -> LoadGen:
        self.started_at = time.monotonic()
        for i in range(self.threads):
            t = threading.Thread(target=self._run, name=f"loadgen-{i}", daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def stop(self) -> list[Sample]:
        """Stop every thread (each finishes its request, bounded by timeout); the samples."""
        self._stop.set()
        for t in self._workers:
            t.join(self.timeout + 5.0)
        alive = [t.name for t in self._workers if t.is_alive()]
        if alive:
            raise RuntimeError(f"load threads still running: {alive}")
        return self.snapshot()

    def __enter__(self) -> LoadGen:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def snapshot(self) -> list[Sample]:
        with self._lock:
            return sorted(self.samples, key=lambda s: s.start)

    def count(self) -> int:
        with self._lock:
            return len(self.samples)

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.snapshot() if s.start >= t]

    def wait_for_tail(self, after: float, seconds: float, requests: int = 100) -> None:
        """Until the load has run `seconds` past `after` and answered (or failed) at least
        `requests` requests started after it: what a test then asserts on is there."""

        def tail() -> bool:
            return time.monotonic() - after >= seconds and len(self.since(after)) >= requests

        wait_until(tail, timeout=60, what=f"{requests} requests in {seconds} s of load")

    def _run(self) -> None:
        deadline = self.started_at + self.max_duration
        while not self._stop.is_set() and time.monotonic() < deadline:
            sample = fetch(self.host, self.port, self.path, self.timeout)
            with self._lock:
                self.samples.append(sample)
            if self.pace > 0:
                self._stop.wait(max(0.0, sample.start + self.pace - time.monotonic()))


def failures(samples: Iterable[Sample]) -> Counter[str]:
    """Error kind -> count, for the samples that failed."""
    return Counter(s.kind for s in samples if not s.ok)


def longest_pause(samples: Iterable[Sample], start: float, end: float) -> float:
    """The longest stretch of [start, end] in which no request was started."""
    times = [start, *sorted(s.start for s in samples if start <= s.start <= end), end]
    return max(b - a for a, b in itertools.pairwise(times))


def summary(samples: list[Sample]) -> dict[str, object]:
    """Counts and latency figures: what a test prints and a benchmark tabulates."""
    latencies = sorted(s.latency for s in samples if s.ok)

    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return latencies[min(len(latencies) - 1, max(0, round(p / 100 * len(latencies)) - 1))]

    fails = failures(samples)
    return {
        "requests": len(samples),
        "ok": len(samples) - sum(fails.values()),
        "failed": sum(fails.values()),
        "refused": fails.get("refused", 0),
        "errors": dict(fails),
        "releases": dict(Counter(s.release for s in samples if s.ok)),
        "p50_ms": None if (v := pct(50)) is None else round(v * 1000, 1),
        "p99_ms": None if (v := pct(99)) is None else round(v * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1) if latencies else None,
    }


@dataclass(frozen=True)
class Switch:
    """One switch as the client saw it: from, to, when the command ran, and whether the
    daemon took it (a failed switch leaves old running)."""

    old: str
    new: str
    start: float
    end: float
    ok: bool = True

    @property
    def running_after(self) -> str:
        return self.new if self.ok else self.old


def unexpected_releases(
    samples: Iterable[Sample], first: str, switches: list[Switch]
) -> list[Sample]:
    """ok samples answered by a release that was neither active nor being switched to
    at any moment of the request; first is the release active before the first switch."""
    bad = []
    for s in samples:
        if not s.ok:
            continue
        allowed = {first} if not switches or s.start < switches[0].start else set()
        for i, sw in enumerate(switches):
            after = switches[i + 1].start if i + 1 < len(switches) else float("inf")
            if sw.start <= s.end and s.start <= sw.end:  # overlaps the switch
                allowed |= {sw.old, sw.new}
            if sw.end <= s.end and s.start <= after:  # overlaps the time after sw
                allowed.add(sw.running_after)
        if s.release not in allowed:
            bad.append(s)
    return bad
