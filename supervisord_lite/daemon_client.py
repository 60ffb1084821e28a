"""The old import path of client/connection.py, kept for tests, chaos/ and scripts outside
the package that reach the daemon with `daemon_client.request`."""

from __future__ import annotations

from supervisord_lite.client.connection import (
    daemon_pid,
    read_pid,
    request,
    request_stream,
    signal_daemon,
)

__all__ = ["daemon_pid", "read_pid", "request", "request_stream", "signal_daemon"]
