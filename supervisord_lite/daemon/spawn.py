"""Spawning one child: spec -> argv, env, cwd, fds (pure), then posix_spawn and a pidfd.

Choices, and what was rejected:
- os.posix_spawn, not subprocess or anyio.open_process. On 3.11 asyncio's child watcher
  blocks one thread in waitpid per child (500 processes, 500 threads), and open_process
  cannot place sockets at fd 3, 4, ... posix_spawn (vfork + exec in glibc) can: its
  file_actions dup2 the output pipe to 1 and 2 and the sockets to 3.., and setsid=True
  gives the child its own session and process group (pgid == pid).
- The exit is awaited on a pidfd (`anyio.wait_readable`), then reaped with
  waitpid(pid): no thread, no SIGCHLD handler, no waitpid(-1). The one task that spawned
  a child is the one that awaits it (process.py).
- posix_spawn has no chdir (glibc's addchdir_np is not exposed by Python 3.11), so the
  `/bin/sh -c` that SPEC asks for anyway does the `cd`, and `export LISTEN_PID=$$` before
  `exec` gives LISTEN_PID the child's own pid (exec keeps the shell's pid). A command of
  plain words is exec'd as that shell would exec it, without it (directexec.py): the
  daemon changes its own cwd around the posix_spawn, which the child inherits.
- stdout and stderr share one pipe: one reader per child instead of two, and their lines
  stay in the order the child wrote them.
- Signals the daemon ignores (Python ignores SIGPIPE) would be inherited across exec;
  setsigdef puts them back to their defaults, and setsigmask clears the mask.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from supervisord_lite.daemon.directexec import direct_exec
from supervisord_lite.execline import BASE_ENV, exec_line
from supervisord_lite.manifest import ProcessSpec, Release

SHELL = "/bin/sh"
SHIM = 'cd -- "$1" || exit 127\nshift\n'
LISTEN_SHIM = "export LISTEN_PID=$$\n"
RESET_SIGNALS = (
    signal.SIGPIPE,
    signal.SIGXFSZ,
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGCHLD,
)


@dataclass(frozen=True)
class SpawnPlan:
    """Everything needed to start one child; built without touching the OS."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    fds: tuple[int, ...] = ()  # daemon-side fds to place at 3, 4, ... in the child
    cmd: str = ""  # the command as declared: plain words skip the shell (directexec.py)


def base_env(environ: Mapping[str, str], pass_env: Sequence[str]) -> dict[str, str]:
    """The small part of the daemon's environment a child may see."""
    return {k: environ[k] for k in (*BASE_ENV, *pass_env) if k in environ}


def child_env(
    base: Mapping[str, str],
    release: Release,
    spec: ProcessSpec,
    index: int,
    *,
    socket_names: Sequence[str] = (),
    notify_address: str | None = None,
) -> dict[str, str]:
    """The environment of `<type>.<index>`: base, config, type env, then ours on top."""
    env = {**base, **release.config, **spec.env}
    if spec.port is not None:
        env["PORT"] = str(spec.port + index - 1)
    env["BRR_RELEASE"] = release.id
    env["BRR_BUILD"] = release.build
    env["BRR_PROCESS"] = f"{spec.type}.{index}"
    if socket_names:
        env["LISTEN_FDS"] = str(len(socket_names))
        env["LISTEN_FDNAMES"] = ":".join(socket_names)
    if notify_address is not None:
        env["NOTIFY_SOCKET"] = notify_address
    return env


def shell_argv(cmd: str, cwd: Path, *, listen: bool) -> tuple[str, ...]:
    script = SHIM + (LISTEN_SHIM if listen else "") + exec_line(cmd)
    return (SHELL, "-c", script, "sh", str(cwd))


def plan(
    name: str, cmd: str, env: Mapping[str, str], cwd: Path, fds: Sequence[int] = ()
) -> SpawnPlan:
    return SpawnPlan(name, shell_argv(cmd, cwd, listen=bool(fds)), env, cwd, tuple(fds), cmd)


@dataclass(eq=False, slots=True)
class Child:
    """A spawned child: its pid (== pgid), the read end of its output, its pidfd."""

    pid: int
    output_fd: int
    pidfd: int
    exit_code: int | None = None

    async def wait(self) -> int:
        """Wait for the exit and reap it; the exit code (-N for signal N).

        Only the task that spawned the child may call this. Cancellation leaves it
        unreaped; `reap_now` is the shielded way out.
        """
        if self.exit_code is None:
            await anyio.wait_readable(self.pidfd)
        return self.reap()

    def reap(self) -> int:
        """Reap it once its pidfd is readable (this blocks until it exits); the exit code."""
        if self.exit_code is None:
            self._reap(0)
        assert self.exit_code is not None
        return self.exit_code

    def reap_now(self) -> None:
        """SIGKILL the group and reap, blocking: only for a task being torn down."""
        if self.exit_code is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)
            self._reap(0)

    def _reap(self, flags: int) -> None:
        try:
            _, status = os.waitpid(self.pid, flags)
            self.exit_code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            self.exit_code = -signal.SIGKILL  # reaped by someone else: should not happen
        os.close(self.pidfd)


def spawn(p: SpawnPlan) -> Child:
    """Start the child in its own session. Raises OSError when it cannot be started."""
    direct = direct_exec(p.cmd, p.env, p.cwd, fds=bool(p.fds)) if p.cmd else None
    child = spawn_direct(p, *direct) if direct is not None else None
    return child or _spawn(p, SHELL, list(p.argv), dict(p.env))


def spawn_direct(p: SpawnPlan, program: str, argv: list[str]) -> Child | None:
    """The child exec'd without the shell, from p.cwd; None when the shell must do it
    (the exec failed: ENOEXEC for a script with no #!, say; or p.cwd is not there)."""
    try:
        previous = os.getcwd()
        os.chdir(p.cwd)  # posix_spawn has no chdir in 3.11: the child inherits ours
    except OSError:
        return None
    try:
        # what the shell's `cd` exports, so the program sees the same either way
        env = {**p.env, "PWD": str(p.cwd), "OLDPWD": previous}
        return _spawn(p, program, argv, env, direct=True)
    except ExecFailed:
        return None
    finally:
        # nothing awaits in between, so no other task ran from p.cwd; and should the old
        # cwd be gone, the daemon's own paths are absolute
        with contextlib.suppress(OSError):
            os.chdir(previous)


class ExecFailed(Exception):
    """posix_spawn failed: no child was left (glibc reaps the one whose exec failed)."""


def _spawn(
    p: SpawnPlan,
    program: str,
    argv: list[str],
    env: dict[str, str],
    *,
    direct: bool = False,
) -> Child:
    """posix_spawn with the output pipe and p's fds; direct: a failed posix_spawn raises
    ExecFailed, for the caller to try the shell instead."""
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3 + len(p.fds)) for fd in p.fds]
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, write_fd, 1),
        (os.POSIX_SPAWN_DUP2, write_fd, 2),
    ]
    # sources first moved above the targets so that no dup2 overwrites a later source
    actions += [(os.POSIX_SPAWN_DUP2, src, 3 + i) for i, src in enumerate(moved)]
    try:
        pid = os.posix_spawn(
            program,
            argv,
            env,
            file_actions=actions,
            setsid=True,
            setsigdef=RESET_SIGNALS,
            setsigmask=(),
        )
    except OSError as exc:
        os.close(read_fd)
        if direct:
            raise ExecFailed(str(exc)) from exc
        raise
    except BaseException:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
        for fd in moved:
            os.close(fd)
    os.set_blocking(read_fd, False)
    # a pidfd of a zombie is fine: nobody else reaps our children (reaper.py)
    return Child(pid, read_fd, os.pidfd_open(pid))
