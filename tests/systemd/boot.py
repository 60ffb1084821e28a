"""A throwaway systemd 252 as PID 1 of its own namespaces, safe on a shared host.

The recipe (learned the hard way: systemd's tmpfiles rules empty /tmp at boot): new mount,
pid, net, uts and ipc namespaces; / bound read-only; /etc, /var, /srv, /opt, /usr/local,
/root and /home as overlays whose writes land in a layers directory of the test's own;
fresh tmpfs on /tmp, /run and /dev/shm; pivot_root (not chroot, so `nsenter -a` lands in
the same root systemd sees); database, network and timer units masked. Nothing the box
does reaches the host's files; killing its PID 1 with SIGKILL ends every process in it,
and its mounts die with the namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
from pathlib import Path

from tests.helpers import wait_until

SYSTEMD = Path("/lib/systemd/systemd")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# services that would reach the network, touch databases or only add load in a test box
MASKED = (
    "postgresql.service postgresql@15-main.service ssh.service cron.service "
    "systemd-timesyncd.service e2scrub_reap.service getty@tty1.service console-getty.service "
    "apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer "
    "fstrim.timer man-db.timer"
)

# runs as PID 1 of the new pid namespace, in the new mount namespace, then becomes systemd
_SCRIPT = r"""
set -e
layers=$SD_LAYERS
mount -t tmpfs -o mode=0755 sdscratch /mnt
mkdir -p /mnt/root
mount --rbind / /mnt/root
mount --make-rprivate /mnt/root
mount -o remount,bind,ro /mnt/root
for d in etc var srv opt usr/local root home; do
  [ -d /mnt/root/$d ] || continue
  n=${d//\//_}; mkdir -p "$layers/up/$n" "$layers/wk/$n"
  mount -t overlay overlay \
    -o "lowerdir=/$d,upperdir=$layers/up/$n,workdir=$layers/wk/$n" /mnt/root/$d
done
mount -t tmpfs -o mode=1777 tmpfs /mnt/root/tmp
mount -t tmpfs -o mode=0755 tmpfs /mnt/root/run
mount -t tmpfs -o mode=1777 tmpfs /mnt/root/dev/shm
mount -t proc proc /mnt/root/proc
for u in $SD_MASK; do ln -sf /dev/null /mnt/root/etc/systemd/system/$u; done
# the box's own loopback, where the app listens (systemd brings it up too; this is earlier)
ip link set lo up
cd /mnt/root
pivot_root . mnt
umount -l /mnt
exec /usr/bin/env -i container=sdboot PATH=$SD_PATH /lib/systemd/systemd --system
"""


def _die_with_parent() -> None:
    """In unshare, before exec: if the test process dies (even by SIGKILL), unshare gets
    SIGKILL, and its --kill-child sends SIGKILL to the box's PID 1: no orphaned box."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


class BootError(RuntimeError):
    """systemd could not be booted here; the message says why."""


def cannot_boot_reason() -> str | None:
    """Why a box cannot be booted on this machine, or None when it can."""
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    if not SYSTEMD.exists():
        return f"{SYSTEMD} not found"
    for tool in ("unshare", "nsenter", "pivot_root", "ip"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--pid", "--fork", "--net", "--uts", "--ipc", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces: {probe.stderr.strip()}"
    return None


class Box:
    """One booted systemd; `sh` runs a shell command inside it as root."""

    def __init__(self, layers: Path, log: Path) -> None:
        self.layers = layers
        self.log = log
        self.pid = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._pidns = ""

    def boot(self, timeout: float = 120.0) -> None:
        self.layers.mkdir(parents=True, exist_ok=True)
        env = {"PATH": PATH, "SD_LAYERS": str(self.layers), "SD_MASK": MASKED, "SD_PATH": PATH}
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                ["unshare", "--mount", "--pid", "--fork", "--net", "--uts", "--ipc",
                 "--propagation", "private", "--kill-child=SIGKILL", "bash", "-c", _SCRIPT],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True, preexec_fn=_die_with_parent,
            )  # fmt: skip
        self.pid = self._find_systemd(timeout)
        self._pidns = os.readlink(f"/proc/{self.pid}/ns/pid")
        self._check_isolated()
        self._wait_running(timeout)

    def _find_systemd(self, timeout: float) -> int:
        assert self._proc is not None
        children = Path(f"/proc/{self._proc.pid}/task/{self._proc.pid}/children")
        proc = self._proc

        def systemd_or_gone() -> int:
            """systemd's pid; -1 once unshare exited (it never will start then)."""
            if proc.poll() is not None:
                return -1
            for pid in children.read_text().split() if children.exists() else []:
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            return 0

        with contextlib.suppress(AssertionError):
            pid = wait_until(systemd_or_gone, timeout=timeout, interval=0.1, what="systemd")
            if pid > 0:
                return pid
        self.kill()
        raise BootError(f"systemd did not start: {self.log.read_text(errors='replace')[-2000:]}")

    def _check_isolated(self) -> None:
        """Refuse to go on unless the box's / is read-only and /tmp, /run are its own."""
        seen = self.sh(
            "findmnt -no FSTYPE,OPTIONS /; findmnt -no FSTYPE /tmp; findmnt -no FSTYPE /run",
            check=False,
        )
        lines = seen.stdout.splitlines()
        ok = len(lines) == 3 and "ro" in lines[0].split()[1].split(",")
        if not ok or lines[1] != "tmpfs" or lines[2] != "tmpfs":
            self.kill()
            raise BootError(f"box not isolated as required, killed it: {seen.stdout!r}")

    def _wait_running(self, timeout: float) -> None:
        states: list[str] = [""]

        def booted() -> bool:
            states.append(
                self.sh("systemctl is-system-running", check=False, timeout=10).stdout.strip()
            )
            return states[-1] in ("running", "degraded")

        with contextlib.suppress(AssertionError):
            wait_until(booted, timeout=timeout, interval=0.3, what="systemd's boot")
            return
        state = states[-1]
        self.kill()
        raise BootError(f"systemd did not finish booting within {timeout:g} s: {state!r}")

    def sh(
        self, script: str, *, check: bool = True, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run script with bash inside the box, as root, in a clean environment."""
        argv = ["nsenter", "-t", str(self.pid), "-a", "/usr/bin/env", "-i", f"PATH={PATH}",
                "HOME=/root", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0",
                "bash", "-c", script]  # fmt: skip
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(f"timed out after {timeout:g} s in the box: {script}") from exc
        if check and proc.returncode != 0:
            raise AssertionError(
                f"in the box, `{script}` exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
            )
        return proc

    def path(self, inside: str) -> Path:
        """The host's view of a path inside the box (through its PID 1's root)."""
        return Path(f"/proc/{self.pid}/root") / inside.lstrip("/")

    def kill(self) -> None:
        """SIGKILL the box's PID 1: the kernel ends every process of its pid namespace."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        if self._proc is not None:
            self._proc.wait(timeout=60)
        if self._pidns:
            wait_until(
                lambda: not self.leftovers(),
                timeout=60,
                interval=0.1,
                what="every process of the box to end",
            )
        self.pid = 0

    def leftovers(self) -> list[int]:
        """Host pids still in the box's pid namespace."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if os.readlink(entry / "ns/pid") == self._pidns:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found
