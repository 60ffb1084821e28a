"""The run stage under a real systemd 252, driven as an operator would.

The module boots systemd as PID 1 of its own namespaces (tests/systemd/boot.py), installs
supervisord_lite there with the commands of docs/operations.md, deploys the example app and
enables the shipped unit. The tests run in order on that one boot: each leaves the app
serving (or stopped, for the last ones) as the next expects; only the second-boot test boots
again, on the same root.
"""

from __future__ import annotations

import re

import pytest

from tests.helpers import wait_until
from tests.systemd.boot import Box
from tests.systemd.conftest import INSTALL, OPERATIONS, Host, boot

UNIT = "supervisord-lite@myapp"
ROOT = "/srv/myapp"
DROP_IN = f"/etc/systemd/system/{UNIT}.service.d/watchdog.conf"

pytestmark = pytest.mark.timeout(300)


def curl(box: Box) -> str:
    """The app's answer on its port, or "" when nothing answers."""
    proc = box.sh("curl -sS --max-time 5 http://127.0.0.1:8080/", check=False, timeout=30)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def status_line(box: Box) -> str:
    """The `Status:` line of `systemctl status`, the daemon's STATUS=."""
    out = box.sh(f"systemctl status {UNIT} --no-pager --lines=0", check=False).stdout
    found = re.search(r'Status: "(.*)"', out)
    return found.group(1) if found else f"(no Status: line in {out!r})"


def main_pid(box: Box) -> int:
    return int(box.sh(f"systemctl show -p MainPID --value {UNIT}").stdout.strip())


def app_processes(box: Box) -> set[str]:
    """Every process of the app's user, as "pid start-time" (a reused pid is another)."""
    out = box.sh("ps -u app -o pid=,lstart= || true").stdout
    return {" ".join(line.split()) for line in out.splitlines() if line.strip()}


def is_active(box: Box) -> str:
    return box.sh(f"systemctl is-active {UNIT}", check=False).stdout.strip()


def current(box: Box) -> str:
    return box.sh(f"readlink {ROOT}/current").stdout.strip().rsplit("/", 1)[-1]


def serving(box: Box, release: str, *, timeout: float = 90.0) -> str:
    """Wait until the app answers from release; its answer."""

    def answer() -> str:
        text = curl(box)
        return text if f" from {release} " in text else ""

    return wait_until(
        answer, timeout=timeout, interval=0.3, what=f"the app to answer from {release}"
    )


def in_journal(box: Box, pattern: str) -> str:
    """Wait until a line of the unit's journal matches the regex pattern (journald takes a
    stream's lines asynchronously); that line. Fails showing the journal's tail."""

    def journal() -> str:
        return box.sh(f"journalctl -u {UNIT} --no-pager -o cat").stdout

    try:
        found = wait_until(
            lambda: re.search(pattern, journal(), re.M), interval=0.2, what=f"{pattern!r}"
        )
    except AssertionError:
        raise AssertionError(
            f"no line matches {pattern!r} in the journal:\n{journal()[-4000:]}"
        ) from None
    return found.group(0)


def back_to_v2(box: Box) -> None:
    """The operator's way out of a failed test of a refused deploy, so that the tests after
    it do not fail for its reason."""
    if current(box) != "v2" or " from v2 " not in curl(box):
        box.sh(f"brr-release --root {ROOT} rollback v2 --wait", check=False)


def test_docs_hold_every_command_the_test_runs() -> None:
    text = OPERATIONS.read_text()
    missing = [command for command in INSTALL if command not in text]
    assert not missing, f"docs/operations.md lacks: {missing}"


def test_enable_now_serves_the_release_and_status_names_it(host: Host) -> None:
    box = host.box
    assert is_active(box) == "active"
    assert "v1" in status_line(box)
    answer = curl(box)
    assert answer.startswith("hello from v1 (web."), answer


def test_journal_holds_the_processes_lines(host: Host) -> None:
    box = host.box
    for line in (
        re.escape("web.1 | web.1 of v1 serving on 127.0.0.1:8080"),
        re.escape("web.2 | web.2 of v1 serving on 127.0.0.1:8080"),
        re.escape("worker.1 | worker of v1: job 1 done"),
    ):
        in_journal(box, line)


def test_hardening_keeps_the_app_out_of_everything_but_run_and_logs(host: Host) -> None:
    box = host.box

    def probe_lines() -> list[str]:
        journal = box.sh(f"journalctl -u {UNIT} --no-pager -o cat").stdout
        lines = [line for line in journal.splitlines() if line.startswith("probe.1 | probe: ")]
        return lines if len(lines) >= 9 else []

    lines = wait_until(probe_lines, timeout=60, what="the probe's nine lines in the journal")
    said = {line.split("probe: ", 1)[1].split()[0]: line.rsplit(" ", 1)[1] for line in lines}
    # builds/ and releases/ are group-writable for deploy, and app is in deploy: only
    # ProtectSystem=strict with ReadOnlyPaths= keeps them read-only for the app
    for path in ("/srv/myapp/builds/probe", "/srv/myapp/releases/probe"):
        assert said[path] == "EROFS", (path, lines)
    for path in ("/etc/probe", "/opt/probe", "/usr/local/probe", "/root/probe"):
        assert said[path] in ("EROFS", "EACCES"), (path, lines)
    for path in ("/srv/myapp/run/probe", "/srv/myapp/logs/probe", "/tmp/probe"):
        assert said[path] == "written", (path, lines)
    # PrivateTmp=yes: the app's /tmp is not the host's
    assert not box.path("/tmp/probe").exists()


def test_reload_after_a_good_activate_returns_after_the_switch(host: Host) -> None:
    box = host.box
    box.sh(f"brr-release --root {ROOT} config set GREETING=hi")
    activate = box.sh(f"brr-release --root {ROOT} activate v2 --no-signal")
    # a daemon runs: it was not signalled, which is not "none runs"
    assert "no daemon running" not in activate.stdout + activate.stderr, activate.stdout
    reload = box.sh(f"systemctl reload {UNIT}", check=False)
    assert reload.returncode == 0, reload.stderr
    # no wait: once reload returned, the new release serves
    assert curl(box).startswith("hi from v2 "), curl(box)
    assert "v2" in status_line(box)


def test_reload_after_a_broken_deploy_fails_and_the_old_release_serves(host: Host) -> None:
    box = host.box
    box.sh(f"brr-release --root {ROOT} deploy /srv/broken --no-signal")
    assert current(box) == "v3"
    reload = box.sh(f"systemctl reload {UNIT}", check=False)
    assert reload.returncode != 0, reload.stdout + reload.stderr
    assert "failed" in reload.stderr, reload.stderr
    assert is_active(box) == "active"
    assert curl(box).startswith("hi from v2 "), curl(box)
    # the reload command's one line reaches the journal
    in_journal(box, r"^supervisord-lite: error: .*\bv3\b.*; still running v2$")
    # systemctl status names the refused release next to the one that runs
    line = status_line(box)
    assert "v3" in line and "v2" in line, line
    # the daemon moved `current` off the release it refused
    wait_until(lambda: current(box) == "v2", timeout=30, what="current back on v2")
    releases = box.sh(f"brr-release --root {ROOT} releases").stdout
    assert re.search(r"^  v3 .* refused: ", releases, re.M), releases


def test_restart_after_a_refused_reload_serves_the_last_good_release(host: Host) -> None:
    # the reboot case: `current` still names the refused release, because an operator's
    # command held the root's lock for as long as that daemon ran
    box = host.box
    try:
        box.sh(f"brr-release --root {ROOT} deploy /srv/broken --no-signal")
        refused = current(box)
        held = box.sh(
            f"flock {ROOT}/run/lock sh -c "
            f"'systemctl reload {UNIT}; echo reload exit $?; systemctl stop {UNIT}'"
        )
        assert "reload exit 1" in held.stdout, held.stdout + held.stderr
        assert current(box) == refused
        box.sh(f"systemctl start {UNIT}")
        assert is_active(box) == "active"
        serving(box, "v2", timeout=30)
        line = status_line(box)
        assert refused in line and "v2" in line, line
        wait_until(lambda: current(box) == "v2", timeout=30, what="current back on v2")
    finally:
        back_to_v2(box)


def test_deploy_wait_refused_moves_current_back(host: Host) -> None:
    box = host.box
    try:
        deploy = box.sh(f"brr-release --root {ROOT} deploy /srv/broken --wait", check=False)
        assert deploy.returncode == 1, deploy.stdout + deploy.stderr
        assert current(box) == "v2"
        assert curl(box).startswith("hi from v2 "), curl(box)
    finally:
        back_to_v2(box)


def test_kill_9_of_the_daemon_restarts_it_and_leaves_nothing_of_the_old_tree(
    host: Host,
) -> None:
    box = host.box
    old_pid = main_pid(box)
    old_tree = app_processes(box)
    assert len(old_tree) >= 5, old_tree  # daemon, web.1, web.2, worker.1, probe.1
    box.sh(f"kill -9 {old_pid}")
    wait_until(
        lambda: main_pid(box) not in (0, old_pid) and is_active(box) == "active",
        timeout=90,
        what="systemd to restart the daemon",
    )
    serving(box, "v2")
    assert not old_tree & app_processes(box), old_tree & app_processes(box)


def test_a_stopped_daemon_is_restarted_by_the_watchdog(host: Host) -> None:
    box = host.box
    box.sh(f"systemctl reset-failed {UNIT}")  # the test restarts more often than StartLimit*
    box.sh(
        f"mkdir -p $(dirname {DROP_IN}) && "
        f"printf '[Service]\\nWatchdogSec=5\\nTimeoutAbortSec=10\\n' > {DROP_IN} && "
        f"systemctl daemon-reload && systemctl restart {UNIT}"
    )
    try:
        old_pid = main_pid(box)
        old_tree = app_processes(box)
        box.sh(f"kill -STOP {old_pid}")
        wait_until(
            lambda: main_pid(box) not in (0, old_pid) and is_active(box) == "active",
            timeout=90,
            what="the watchdog to restart the daemon",
        )
        serving(box, "v2")
        in_journal(box, r"Watchdog timeout")
        assert not old_tree & app_processes(box)
    finally:
        # the running daemon keeps WatchdogSec=5 until its next start; nothing restarts it
        box.sh(f"rm -f {DROP_IN} && systemctl daemon-reload")


def test_stop_leaves_no_process_of_the_app(host: Host) -> None:
    box = host.box
    assert app_processes(box)
    box.sh(f"systemctl stop {UNIT}")
    assert app_processes(box) == set()
    assert curl(box) == ""
    assert is_active(box) == "inactive"


def test_a_second_boot_of_the_same_root_brings_the_app_up_with_no_command(host: Host) -> None:
    # the 3 a.m. case: a deploy landed while the daemon was down and nothing refused it yet
    box = host.box
    box.sh(f"brr-release --root {ROOT} deploy /srv/broken --no-signal")
    never_ran = current(box)
    assert never_ran not in ("v1", "v2")
    layers = box.layers
    box.kill()
    host.box = box = boot(layers)
    serving(box, "v2", timeout=120)
    assert is_active(box) == "active"
    line = status_line(box)
    assert never_ran in line and "v2" in line, line
    wait_until(lambda: current(box) == "v2", timeout=30, what="current back on v2")
