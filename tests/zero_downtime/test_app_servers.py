"""Issue 4 with real app servers: gunicorn and uvicorn on the daemon-held socket.

gunicorn runs plain (`gunicorn app:app`): it finds the socket through LISTEN_FDS and
LISTEN_PID by itself (adding `--bind fd://3` would make it take fd 3 twice). It also sends
READY=1 to NOTIFY_SOCKET once its arbiter holds the socket (with --preload: once it has
imported the app too), so `ready: {notify: true}` is a check the new release really
passes itself. uvicorn takes the socket with
`--fd 3`; it has no readiness signal of its own, so it gets `ready: {after: ...}`.
Both are stopped with SIGTERM, drain for their graceful timeout, and get a stop_timeout
above it, so the daemon never SIGKILLs them mid-request (docs/zero-downtime.md).

uvicorn (0.54) has a race of its own in its shutdown: a connection it accepted in the
same event-loop iteration as it stops, whose request it has not read yet, is closed with
the request unread, and the client sees a reset (uvicorn discussion 2315, issue 2757; a
fix, PR 3124, was not merged). About 1 in 5,000 requests with a shared listener. The
daemon avoids it (daemon/steering.py): the new generation gets a listener of its own,
new connections are steered to it, and the old generation is signalled only once its
listener's accept queue is empty. So every server here gets no allowance at all: 20
switches, 0 failed requests.
"""

from __future__ import annotations

import shlex
import time

import pytest

from tests.zero_downtime.conftest import GUNICORN, UVICORN, Deploy, server_app
from tests.zero_downtime.loadgen import (
    LoadGen,
    failures,
    longest_pause,
    summary,
    unexpected_releases,
)

SWITCHES = 20
GUNICORN_CMD = f"{shlex.quote(GUNICORN)} app:app --preload --workers 2 --graceful-timeout 5"

WSGI_APP = """\
import os

RELEASE = os.environ["BRR_RELEASE"].encode()


def app(environ, start_response):
    body = RELEASE + b"\\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
"""

ASGI_APP = """\
import os

RELEASE = os.environ["BRR_RELEASE"].encode()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = RELEASE + b"\\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
"""


def switch_under_load(deploy: Deploy, cmd: str, ready: str, app: str, stop: int) -> None:
    src = server_app(deploy.tmp / "src", deploy.port, cmd=cmd, ready=ready, app=app, stop=stop)
    v1 = deploy.release(deploy.build(src), "GREETING=g1")
    v2 = deploy.config_set("GREETING=g2")
    deploy.start(v1)
    listener = deploy.listener()
    with LoadGen(deploy.port, threads=4, pace=0.01, max_duration=200) as load:
        deploy.wait_serving(v1)
        began = time.monotonic()
        for i in range(SWITCHES):
            deploy.switch(v2 if i % 2 == 0 else v1)
            # a paced interval, so the load keeps running between switches
            time.sleep(max(0.0, began + (i + 1) * 1.5 - time.monotonic()))
        last = deploy.switches[-1]
        load.wait_for_tail(last.end, 2.0)
    samples = load.snapshot()
    tail = [s for s in samples if s.start > last.end]
    print(f"\n{cmd.split()[0].rsplit('/', 1)[-1]}, {SWITCHES} switches: {summary(samples)}")
    errors = failures(samples)
    assert errors == {}, summary(samples)
    assert unexpected_releases(samples, v1, deploy.switches) == []
    assert longest_pause(samples, began, last.end) < 6.0
    assert len(tail) >= 20 and {s.release for s in tail} == {last.new}
    if deploy.drained() is not None:  # each generation had a listener of its own
        assert deploy.drained() == SWITCHES and deploy.listener() != listener


@pytest.mark.timeout(300)
def test_gunicorn_twenty_switches_under_load(deploy: Deploy) -> None:
    switch_under_load(deploy, GUNICORN_CMD, "{notify: true}", WSGI_APP, stop=10)


@pytest.mark.timeout(180)
def test_gunicorn_preload_refuses_an_app_that_cannot_import(deploy: Deploy) -> None:
    """With --preload the arbiter imports the app before it sends READY=1, so a release
    whose app raises at import never counts as ready and the old one serves on. (Without
    it, READY=1 comes first and the workers fail to boot after the switch.)"""
    good = server_app(
        deploy.tmp / "src",
        deploy.port,
        cmd=GUNICORN_CMD,
        ready="{notify: true}",
        app=WSGI_APP,
        stop=10,
    )
    broken = server_app(
        deploy.tmp / "broken",
        deploy.port,
        cmd=GUNICORN_CMD,
        ready="{notify: true}",
        app='raise ImportError("this release cannot import")\n',
        stop=10,
    )
    v1 = deploy.release(deploy.build(good))
    v2 = deploy.release(deploy.build(broken))
    deploy.start(v1)
    with LoadGen(deploy.port, threads=4, pace=0.01, max_duration=120) as load:
        deploy.wait_serving(v1)
        proc = deploy.switch(v2, expect_ok=False)
        load.wait_for_tail(deploy.switches[-1].end, 2.0)
    samples = load.snapshot()
    print(f"\ngunicorn, broken app: {summary(samples)}; activate said: {proc.stderr.strip()}")
    assert proc.returncode == 1 and "did not switch to v2" in proc.stderr
    assert "before it was ready" in proc.stderr and "still running v1" in proc.stderr
    assert failures(samples) == {}, summary(samples)
    assert {s.release for s in samples} == {v1}
    assert deploy.status()["release"] == v1


@pytest.mark.timeout(300)
def test_uvicorn_twenty_switches_under_load(deploy: Deploy) -> None:
    cmd = f"{shlex.quote(UVICORN)} app:app --fd 3 --timeout-graceful-shutdown 5 --no-access-log"
    switch_under_load(deploy, cmd, "{after: 1.5}", ASGI_APP, stop=10)
