"""`supervisord-lite run`: start, output, environment, the one-daemon rule, exit codes."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from supervisord_lite.daemon_client import request
from supervisord_lite.manifest import SocketSpec
from tests.daemon.conftest import SERVE_FD3, Root, proc, start_daemon, stop_daemon
from tests.helpers import DAEMON, SLEEP, pid_alive, python, wait_until

PRINT_ENV = python(
    "import json, os, time\n"
    "open(os.environ['OUT'], 'w').write(json.dumps(dict(os.environ)))\n"
    "time.sleep(3600)"
)


def test_output_lines_are_prefixed_with_the_process_name(droot: Root, daemon: Any) -> None:
    code = (
        "import sys, time\nprint('hello out', flush=True)\n"
        "print('hello err', file=sys.stderr)\ntime.sleep(3600)"
    )
    droot.release(proc("web", python(code), scale=2))
    d = daemon()
    for name in ("web.1", "web.2"):
        wait_until(lambda n=name: f"{n} | hello out" in d.output(), what=f"{name} output")
        wait_until(lambda n=name: f"{n} | hello err" in d.output(), what=f"{name} stderr")


def test_child_environment_is_isolated(droot: Root, daemon: Any, tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    droot.release(
        proc("web", PRINT_ENV, port=7000, env={"OUT": str(out), "TYPE_VAR": "t"}),
        config={"CONFIG_VAR": "c", "TYPE_VAR": "overridden by type env"},
    )
    d = daemon("--pass-env", "PASSED_VAR", env={"SECRET_VAR": "s", "PASSED_VAR": "p"})
    env = json.loads(wait_until(lambda: out.exists() and out.read_text(), what="env dump"))
    assert "SECRET_VAR" not in env
    assert env["PASSED_VAR"] == "p"
    assert env["CONFIG_VAR"] == "c"
    assert env["TYPE_VAR"] == "t"
    assert env["PORT"] == "7000"
    assert env["BRR_RELEASE"] == "v1"
    assert env["BRR_PROCESS"] == "web.1"
    assert env["BRR_BUILD"].startswith("b-")
    assert env["PATH"] == os.environ["PATH"]
    assert env["BRR_SHARED"] == str(droot.path / "shared")
    allowed = {
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "LC_ALL",
        "TZ",
        "PASSED_VAR",
        "OUT",
        "TYPE_VAR",
        "CONFIG_VAR",
        "PORT",
        "BRR_RELEASE",
        "BRR_BUILD",
        "BRR_PROCESS",
        "BRR_SHARED",
        "PYTHONDONTWRITEBYTECODE",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
    }  # the last four are set by /bin/sh itself
    assert set(env) <= allowed, set(env) - allowed
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0


def test_exit_78_without_current_or_last_good(droot: Root) -> None:
    res = subprocess.run(
        [DAEMON, "run", "--root", str(droot.path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 78, res
    assert "no release to run" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_no_root_is_exit_2(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "BRR_ROOT"}
    res = subprocess.run([DAEMON, "run"], capture_output=True, text=True, env=env, timeout=60)
    assert res.returncode == 2
    assert "root" in res.stderr


def test_second_daemon_is_refused_and_pidfile_lives_with_the_first(
    droot: Root, daemon: Any
) -> None:
    droot.release(proc("web", SLEEP(3600)))
    d = daemon()
    pidfile = droot.layout.pidfile
    assert pidfile.read_text().strip() == str(d.pid)
    res = subprocess.run(
        [DAEMON, "run", "--root", str(droot.path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 1
    assert "another supervisord-lite runs" in res.stderr
    assert pidfile.read_text().strip() == str(d.pid)
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    assert not pidfile.exists()


def test_garbage_current_falls_back_to_last_good(droot: Root, daemon: Any, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    good = droot.release(
        proc("web", python(f"import time; open({str(marker)!r}, 'a').write('x'); time.sleep(3600)"))
    )
    d = daemon()
    last_good = droot.layout.last_good
    wait_until(lambda: os.path.exists(last_good), what="last-good")
    assert os.readlink(last_good) == f"../releases/{good}"
    d.signal(signal.SIGTERM)
    assert d.wait_exit() == 0
    # current now names a release whose manifest is garbage
    bad = droot.path / "releases" / "v9"
    bad.mkdir()
    (bad / "release.yaml").write_text("{not: [valid yaml")
    droot.activate("v9")
    marker.unlink()
    d2 = daemon()
    wait_until(marker.exists, what="last-good release started")
    wait_until(
        lambda: "FALLING BACK to last-good v1" in d2.output(), what="FALLING BACK to last-good v1"
    )


def tail(path: Path, nbytes: int = 1 << 20) -> list[str]:
    with path.open("rb") as f:
        f.seek(max(0, path.stat().st_size - nbytes))
        return f.read().decode(errors="replace").splitlines()


def ticks(path: Path) -> list[int]:
    return [int(line.split()[-1]) for line in tail(path) if line.startswith("ticker.1 | tick ")]


def test_a_huge_line_and_a_flood_do_not_stall_other_output(droot: Root, daemon: Any) -> None:
    huge = python(
        "import sys, time\ntime.sleep(1)\n"
        "sys.stdout.write('x' * 10_000_000 + '\\n'); sys.stdout.flush()\ntime.sleep(3600)"
    )
    flood = python("import sys\nwhile True: sys.stdout.write('flood ' * 20 + '\\n')")
    ticker = python(
        "import time\nfor i in range(100000):\n    print('tick', i, flush=True); time.sleep(0.05)"
    )
    droot.release(proc("huge", huge), proc("flood", flood), proc("ticker", ticker))
    d = daemon()
    first = wait_until(lambda: ticks(d.out) and ticks(d.out)[-1], what="ticker output")
    started = time.monotonic()
    # the ticker keeps being heard at roughly its own pace while the flood goes on
    wait_until(lambda: ticks(d.out) and ticks(d.out)[-1] >= first + 40, what="ticker still heard")
    assert time.monotonic() - started < 20
    awk = "/^huge.1 [|] / { n++; if (length > m) m = length } END { print n, m }"
    res = subprocess.run(["awk", awk, str(d.out)], capture_output=True, text=True, timeout=60)
    count, longest = map(int, res.stdout.split())
    # split at 64 KiB; all there, unless stdout fell behind the flood and lines were
    # dropped (bounded queue), which the daemon then says
    dropped = subprocess.run(
        ["grep", "-c", "stdout too slow: dropped", str(d.out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert count == -(-10_000_000 // 65536) or int(dropped.stdout) > 0
    assert longest <= 65536 + len("huge.1 | ")


def test_sigterm_stops_every_process_and_exits_0(droot: Root, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    code = f"import os, time; open({str(pids)!r} + '/' + str(os.getpid()), 'w'); time.sleep(3600)"
    droot.release(proc("web", python(code), scale=3), proc("worker", python(code), scale=2))
    p = start_daemon(droot, tmp_path / "out")
    try:
        wait_until(lambda: len(list(pids.iterdir())) == 5, what="5 children")
        children = [int(f.name) for f in pids.iterdir()]
        started = time.monotonic()
        os.kill(p.pid, signal.SIGTERM)
        assert p.wait(timeout=30) == 0
        assert time.monotonic() - started < 5  # all at once, not one by one
        assert not [c for c in children if pid_alive(c)]
    finally:
        stop_daemon(p, droot)


def test_declared_socket_is_fd_3_with_listen_env(droot: Root, daemon: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    http = {"http": SocketSpec("http", f"127.0.0.1:{port}")}
    droot.release(proc("web", SERVE_FD3, sockets=("http",)), sockets=http)
    d = daemon()
    wait_until(lambda: "web.1 | serving" in d.output(), what="serving on fd 3")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        assert c.recv(100) == b"v1"


def test_status_json_has_exactly_the_contract_shape(droot: Root, daemon: Any) -> None:
    droot.release(proc("web", SLEEP(3600), scale=2))
    daemon()
    res = subprocess.run(
        [DAEMON, "status", "--json", "--root", str(droot.path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    st = json.loads(res.stdout)
    assert set(st) == {
        "release",
        "build",
        "state",
        "processes",
        "last_switch",
        "rejected",
        "fallback",
        "refused",
    }
    assert st["release"] == "v1" and st["build"].startswith("b-")
    assert st["state"] in ("starting", "running")
    assert st["last_switch"] is None and st["rejected"] is None
    assert st["fallback"] is None and st["refused"] == []
    keys = {"name", "type", "release", "pid", "state", "restarts", "uptime", "exit_code"}
    assert [set(p) for p in st["processes"]] == [keys, keys]
    assert [p["name"] for p in st["processes"]] == ["web.1", "web.2"]


def test_log_files_get_each_process_lines(droot: Root, daemon: Any) -> None:
    code = "import time\nprint('to the file', flush=True)\ntime.sleep(3600)"
    droot.release(proc("web", python(code)))
    daemon("--log-files")
    log = droot.path / "logs" / "web.1.log"
    wait_until(lambda: log.exists() and "to the file\n" in log.read_text(), what="log file")


def test_an_unknown_plugin_is_exit_2(droot: Root) -> None:
    droot.release(proc("web", SLEEP(3600)))
    res = subprocess.run(
        [DAEMON, "run", "--root", str(droot.path), "--plugin", "no-such-plugin"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert "no plugin named 'no-such-plugin'" in res.stderr
    assert not droot.layout.pidfile.exists()


def test_signals_right_after_start_are_not_lost_and_do_not_kill(
    droot: Root, tmp_path: Path
) -> None:
    droot.release(proc("web", SLEEP(3600)))
    pidfile = droot.layout.pidfile
    for sig, expect_running in ((signal.SIGHUP, True), (signal.SIGTERM, False)):
        p = start_daemon(droot, tmp_path / f"early-{sig}.out")
        try:
            wait_until(pidfile.exists, interval=0.001, what="pidfile")
            os.kill(p.pid, sig)  # as `brr-release activate` may, before the loop runs
            if expect_running:
                wait_until(
                    lambda: (
                        request(droot.layout.control_socket, {"cmd": "status"})["status"]["state"]
                        == "running"
                    ),
                    what="running after an early SIGHUP",
                )
                assert p.poll() is None
                os.kill(p.pid, signal.SIGTERM)
            assert p.wait(timeout=30) == 0  # an early SIGTERM is a clean stop too
        finally:
            stop_daemon(p, droot)


def fd_targets(pid: int) -> dict[int, str]:
    found = {}
    for name in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):  # closed while we look
            found[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
    return found


def running_procs(root: Root) -> list[dict[str, Any]]:
    status = request(root.layout.control_socket, {"cmd": "status"})["status"]
    return [x for x in status["processes"] if x["state"] == "RUNNING"]


def test_children_do_not_inherit_the_daemons_stray_fds(droot: Root, tmp_path: Path) -> None:
    # as a shell or a deploy tool leaves them: an open file at a low and at a high number
    droot.release(proc("web", SLEEP(3600)))
    stray = tmp_path / "stray"
    with stray.open("w") as f, (tmp_path / "out").open("wb") as out:
        high = fcntl.fcntl(f.fileno(), fcntl.F_DUPFD, 251)  # inheritable, at 251 or above
        passed = (f.fileno(), high)
        try:
            p = subprocess.Popen(
                [DAEMON, "run", "--root", str(droot.path)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                pass_fds=passed,
            )
        finally:
            os.close(high)
    try:
        procs = wait_until(lambda: running_procs(droot), what="web.1 running")
        # the daemon holds them (so the test did pass them), its child does not
        held = [fd for fd, target in fd_targets(p.pid).items() if target == str(stray)]
        assert sorted(held) == sorted(passed), fd_targets(p.pid)
        child = fd_targets(procs[0]["pid"])
        assert str(stray) not in child.values(), child
        assert set(child) == {0, 1, 2}, child
        wait_until(lambda: "inherited fd" in (tmp_path / "out").read_text(), what="logged")
    finally:
        stop_daemon(p, droot)
