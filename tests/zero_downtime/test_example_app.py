"""Issue 4: switches of the example app under continuous load, on a daemon-held socket.

The client opens a new loopback connection per request (4 threads, paced, 5 s timeout
each); every request is recorded, so a refused, reset or timed-out connection anywhere in
the run fails the test, and so does a body from a release that was neither active nor
being switched to while the request was in flight.

The readiness check is `after: 1.0`, not an http check on the socket's address: during a
start-first switch that address is answered by the old generation too, so it would pass
before the new process accepts anything (see test_http_ready_on_the_shared_address...).
"""

from __future__ import annotations

import time

import pytest

from tests.zero_downtime.conftest import Deploy, example_app
from tests.zero_downtime.loadgen import LoadGen, failures, summary, unexpected_releases

SWITCHES = 20
MIN_LOAD = 30.0  # seconds of load the issue asks for
PACE = 1.5  # at least this long from one switch's start to the next one's


def two_releases(deploy: Deploy, **app: object) -> tuple[str, str]:
    build = deploy.build(example_app(deploy.tmp / "src", deploy.port, **app))  # type: ignore[arg-type]
    first = deploy.release(build, "GREETING=g1")
    second = deploy.config_set("GREETING=g2")
    return first, second


def assert_continuous(load: LoadGen, *, start: float, end: float, gap: float = 6.0) -> None:
    """Requests were started all along [start, end], never a pause longer than gap."""
    times = [start] + [s.start for s in load.snapshot() if start <= s.start <= end] + [end]
    longest = max(b - a for a, b in zip(times, times[1:], strict=False))
    assert longest < gap, f"the load paused for {longest:.2f} s"


@pytest.mark.timeout(300)
def test_twenty_start_first_switches_under_load_lose_nothing(deploy: Deploy) -> None:
    v1, v2 = two_releases(deploy)
    deploy.start(v1)
    with LoadGen(deploy.port, threads=4, pace=0.01, max_duration=240) as load:
        deploy.wait_serving(v1)
        began = time.monotonic()
        for i in range(SWITCHES):
            deploy.switch(v2 if i % 2 == 0 else v1)
            # a paced interval, so the load keeps running between switches
            time.sleep(max(0.0, began + (i + 1) * PACE - time.monotonic()))
        last = deploy.switches[-1]
        # at least MIN_LOAD seconds in all, and a tail after the last switch
        time.sleep(max(2.0, began + MIN_LOAD - time.monotonic()))
    samples = load.snapshot()
    tail = [s for s in samples if s.start > last.end]
    print(f"\n{SWITCHES} switches: {summary(samples)}")
    assert [sw.ok for sw in deploy.switches] == [True] * SWITCHES
    assert failures(samples) == {}, summary(samples)
    assert unexpected_releases(samples, v1, deploy.switches) == []
    assert_continuous(load, start=began, end=last.end)
    assert samples[-1].end - began >= MIN_LOAD
    assert len(tail) >= 20 and {s.release for s in tail} == {last.new}
    assert {s.release for s in samples} == {v1, v2}
    assert deploy.status()["release"] == last.new
