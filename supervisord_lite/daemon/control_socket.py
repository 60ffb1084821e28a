"""The control socket's file: `ROOT/run/supervisord-lite.sock`, bound safely.

The socket is bound to a temp name, chmod 0600, and only then listens and is renamed
over the final name: there is no moment when anyone but us can connect, and no umask
fiddling (the umask is process-wide, shared with threads). A socket file left by a
dead daemon is replaced by that rename; one that still answers is another live daemon
and is left alone. On exit the file is removed only if it is still ours. Neither run/
nor the socket's name is followed through a symlink (nofollow.py): a planted one could
lead a client's `shutdown` to another root's daemon.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from supervisord_lite.errors import OperationFailed
from supervisord_lite.nofollow import PlantedLink, open_dir, socket_path_fd

# sessions served at once (control.py), and so the listen backlog
MAX_CLIENTS = 256
SOCKET_MODE = 0o600
MAX_SUN_PATH = 107


def probe_live(path: Path) -> bool:
    """True if a daemon still answers on path; a dead one's file refuses connections.

    A symlink there is not followed (it could lead to another root's daemon): it is
    not a live daemon of ours, and the rename in bind_control_socket replaces it.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            with socket_path_fd(path) as name:
                sock.connect(name)
        except PlantedLink:
            return False
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            return False
        except (TimeoutError, BlockingIOError):
            return True  # its backlog is full (EAGAIN, as the timeout makes it): alive, busy
        except OSError:
            return False
        return True


def bind_control_socket(
    path: Path, backlog: int = MAX_CLIENTS
) -> tuple[socket.socket, os.stat_result]:
    """A listening socket at path, mode 0600 from its first connectable moment.

    The backlog is as deep as the number of sessions the server runs: a burst of that
    many clients queues in it while the loop accepts them; one more finds it full and
    retries (daemon_client.connect), since connect(2) with a timeout gets EAGAIN then.
    """
    if len(os.fsencode(path)) > MAX_SUN_PATH:
        raise OperationFailed(f"control socket path too long for a Unix socket: {path}")
    if probe_live(path):
        raise OperationFailed(f"another daemon is serving the control socket {path}")
    # run/ itself must be ROOT's own directory, not a symlink to another root's
    os.close(open_dir(path.parent.parent, path.parent.name, create=True))
    temp = path.with_name(f".{path.name}.{os.urandom(4).hex()}")
    if len(os.fsencode(temp)) > MAX_SUN_PATH:
        temp = path.with_name(f".c{os.urandom(4).hex()}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.bind(str(temp))
        try:
            os.chmod(temp, SOCKET_MODE)
            sock.listen(backlog)
            os.rename(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        sock.setblocking(False)
        return sock, os.stat(path)
    except BaseException:
        sock.close()
        raise


def remove_if_ours(path: Path, ours: os.stat_result) -> None:
    with contextlib.suppress(OSError):
        st = os.lstat(path)
        if (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino):
            os.unlink(path)
