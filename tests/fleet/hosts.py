"""Test hosts for the fleet: a network namespace each, with its own sshd and daemon.

Each host has a network namespace whose only address (10.231.0.N on its loopback)
exists inside it; ssh reaches it through a ProxyCommand run in that namespace. sshd
runs in a mount namespace of its own where /srv is the host's directory under the
test's tmp_path and /run a fresh tmpfs (sshd's privilege separation directory), so a
login lands on the host's own /srv/app. The daemon runs in the same namespaces, in a
restart loop like systemd's Restart=always (a fresh host has no release yet). Cleanup
kills by pid or process group what was started here and deletes each namespace.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.helpers import BRR, DAEMON, PY, pid_alive, wait_until

RELAY = Path(__file__).with_name("relay.py")
SSHD = "/usr/sbin/sshd"


@dataclass
class Host:
    name: str
    index: int
    ns: str
    base: Path
    sshd: subprocess.Popen[bytes] | None = None
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def srv(self) -> Path:
        return self.base / "srv"

    @property
    def root(self) -> Path:
        """The host's /srv/app, as seen from outside its mount namespace."""
        return self.srv / "app"

    @property
    def address(self) -> str:
        return f"10.231.0.{self.index}"

    def in_ns(self, *argv: str) -> list[str]:
        assert self.sshd is not None
        return ["nsenter", "-t", str(self.sshd.pid), "-m", "-n", "--", *argv]

    def brr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            self.in_ns(BRR, "--root", "/srv/app", *args),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name}: brr-release {args}: {proc.stderr.strip()}")
        return proc

    def start_sshd(self, key_dir: Path) -> None:
        conf = self.base / "sshd_config"
        conf.write_text(
            f"ListenAddress {self.address}:22\n"
            f"HostKey {key_dir / 'host_key'}\n"
            f"AuthorizedKeysFile {key_dir / 'client_key.pub'}\n"
            f"PidFile {self.base / 'sshd.pid'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
            "StrictModes no\nMaxStartups 100\nMaxSessions 100\nLogLevel ERROR\n"
            "Subsystem sftp internal-sftp\n"
        )
        script = (
            f"mount --bind {self.srv} /srv && mount -t tmpfs -o mode=755 tmpfs /run "
            f"&& mkdir /run/sshd && exec {SSHD} -D -e -f {conf}"
        )
        log = open(self.base / "sshd.log", "wb")  # noqa: SIM115 (the child owns it)
        self.sshd = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns,
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        probe = [PY, "-c", f"import socket; socket.create_connection(('{self.address}', 22), 2)"]
        wait_until(
            lambda: subprocess.run(self.in_ns(*probe), capture_output=True).returncode == 0,
            timeout=30,
            interval=0.1,
            what=f"sshd of {self.name} listening",
        )

    def stop_sshd(self) -> None:
        """The host goes unreachable: its sshd is gone (its namespaces stay)."""
        if self.sshd is None:
            return
        # the mount namespace must outlive sshd for the daemon: keep a holder process
        stop(self.sshd)

    def start_daemon(self) -> None:
        log = open(self.base / "daemon.log", "ab")  # noqa: SIM115 (the child owns it)
        loop = f"while :; do {DAEMON} run --root /srv/app; sleep 0.3; done"
        self.daemons.append(
            subprocess.Popen(
                self.in_ns("sh", "-c", loop),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        log.close()

    def cleanup(self) -> None:
        for proc in self.daemons:
            stop(proc, group=True)
        if self.sshd is not None:
            stop(self.sshd)
        # anything else still in the namespace was started by this test (a daemon's child)
        pids = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True)
        for pid in pids.stdout.split():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def stop(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    if proc.poll() is not None:
        return
    try:
        if group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.terminate()
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        if group:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.wait(timeout=30)
    if group:  # the daemon stops its processes on TERM; a straggler of the group goes now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def make_keys(key_dir: Path) -> None:
    key_dir.mkdir(parents=True, exist_ok=True)
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key_dir / name)],
            check=True,
        )


CONTROL_DIR = Path("/root/.ansible/cp")


def write_inventory(
    path: Path, hosts: list[Host], key_dir: Path, *, multiplex: bool = True
) -> Path:
    """An inventory of hosts; multiplex: a master connection kept 3 s between tasks
    (ControlPath named by namespace, so no later test's host reuses it)."""
    CONTROL_DIR.mkdir(parents=True, exist_ok=True)
    lines = ["[app]"]
    for h in hosts:
        proxy = f"ip netns exec {h.ns} {PY} {RELAY} %h %p"
        control = (
            f" -o ControlMaster=auto -o ControlPersist=3s -o ControlPath={CONTROL_DIR}/{h.ns}-%C"
            if multiplex
            else " -o ControlMaster=no"
        )
        lines.append(
            f"{h.name} ansible_host={h.address} "
            f"ansible_ssh_common_args='-o ProxyCommand=\"{proxy}\"{control}'"
        )
    lines += [
        "[app:vars]",
        "ansible_user=root",
        f"ansible_ssh_private_key_file={key_dir / 'client_key'}",
        "ansible_ssh_args=-o StrictHostKeyChecking=no "
        "-o UserKnownHostsFile=/dev/null -o ConnectTimeout=10 -o LogLevel=ERROR",
        f"ansible_python_interpreter={PY}",
        f"brr_release_bin={BRR}",
        "brr_root=/srv/app",
        "brr_activate_timeout=60",
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_hosts(base: Path, count: int) -> list[Host]:
    key_dir = base / "keys"
    make_keys(key_dir)
    tag = f"brrfl{os.getpid() % 100000}"
    hosts = []
    try:
        for i in range(1, count + 1):
            h = Host(name=f"host{i}", index=i, ns=f"{tag}h{i}", base=base / f"host{i}")
            hosts.append(h)
            (h.srv).mkdir(parents=True)
            subprocess.run(["ip", "netns", "add", h.ns], check=True)
            subprocess.run(["ip", "-n", h.ns, "link", "set", "lo", "up"], check=True)
            subprocess.run(
                ["ip", "-n", h.ns, "addr", "add", f"{h.address}/32", "dev", "lo"], check=True
            )
            h.start_sshd(key_dir)
            h.brr("init")
            h.start_daemon()
    except BaseException:
        for h in hosts:
            h.cleanup()
        raise
    return hosts


def pids_alive(hosts: list[Host]) -> list[int]:
    out = []
    for h in hosts:
        for p in [h.sshd, *h.daemons]:
            if p is not None and pid_alive(p.pid):
                out.append(p.pid)
    return out


__all__ = ["Host", "make_hosts", "pids_alive", "sys", "write_inventory"]
