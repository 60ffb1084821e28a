"""The control socket: `ROOT/run/supervisord-lite.sock`, JSON lines, a handler table.

One JSON object per line each way. A request is `{"cmd": NAME, ...}`; a reply is
`{"ok": true, ...}` or `{"ok": false, "error": "one line"}`; `logs` with `follow` then
streams `{"line": ...}` objects until the client goes away.

Choices, and what was rejected:
- The server knows the daemon only through `ControlTarget`, a Protocol of eight methods,
  so it is tested with a fake and the supervisor never sees a socket.
- Dispatch is one dict, cmd -> (handler, accepted arguments); no `getattr` on a string.
  Unknown arguments are refused like wrong types: a typo (`"nmae"`) must not silently
  mean "every process".
- The client is untrusted even though only our uid can connect (mode 0600): a line is
  read with a 1 MiB bound (BufferedByteReceiveStream.receive_until stops reading at the
  bound, so a 2 GiB line costs 1 MiB); garbage earns an error reply and the connection
  stays usable; only an oversized line closes it, since we cannot find where the next
  request starts. Every send has a deadline: a client that never reads is dropped, not
  waited for. At most MAX_CLIENTS sessions run at once; the next one gets an error
  reply and is closed, so a runaway script cannot exhaust the daemon's descriptors.
- A handler that raises is a bug in the daemon, not in the client: it is logged with
  its traceback, the client gets one line, and the server goes on. LookupError is the
  exception: it is how the target says "no such process", and its message is the reply.
- Binding (mode 0600 from the first moment, a dead daemon's file replaced, a live one
  refused) is control_socket.py.
- `logs -f` takes the tail and subscribes in one synchronous step: no line can fall
  between the two, and none is sent twice.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from supervisord_lite.daemon.control_socket import MAX_CLIENTS, bind_control_socket, remove_if_ours

log = logging.getLogger(__name__)

MAX_LINE = 1024 * 1024
SEND_TIMEOUT = 5.0
REFUSE_TIMEOUT = 0.2
MAX_TAIL = 100_000
DEFAULT_TAIL = 100
ACCEPT_BACKOFF = 0.1


class ControlTarget(Protocol):
    """What the control socket can ask of the daemon."""

    def status(self) -> dict[str, Any]: ...

    def request_reload(self) -> None: ...

    async def restart(self, target: str | None) -> list[str]: ...

    async def stop(self, target: str | None) -> list[str]: ...

    async def start(self, target: str | None) -> list[str]: ...

    def log_tail(self, name: str | None, n: int) -> list[str]: ...

    def subscribe_logs(self, name: str | None) -> anyio.abc.ObjectReceiveStream[str]: ...

    def request_shutdown(self) -> None: ...


class BadRequest(Exception):
    """The request is wrong; the reply says why and the connection stays usable."""


@dataclass
class Reply:
    body: dict[str, Any]
    follow: anyio.abc.ObjectReceiveStream[str] | None = None


Handler = Callable[[ControlTarget, dict[str, Any]], Awaitable[Reply]]


def ok(**fields: Any) -> Reply:
    return Reply({"ok": True, **fields})


def error_body(message: str) -> dict[str, Any]:
    return {"ok": False, "error": " ".join(message.split()) or "error"}


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


# --- arguments ---------------------------------------------------------------------------


def optional_str(req: dict[str, Any], key: str) -> str | None:
    value = req.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"{key} must be a string")
    return value or None


def target_arg(req: dict[str, Any]) -> str | None:
    """A process or type to act on; absent (or null) means all, an empty name nothing:
    `stop "$UNSET_VAR"` must not stop everything."""
    value = optional_str(req, "target")
    if req.get("target") is not None and not req["target"].strip():
        raise BadRequest("target is empty: name a process or type, or leave it out for all")
    return value


def int_arg(req: dict[str, Any], key: str, default: int, high: int) -> int:
    value = req.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= high:
        raise BadRequest(f"{key} must be an integer from 0 to {high}")
    return value


def bool_arg(req: dict[str, Any], key: str) -> bool:
    value = req.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be true or false")
    return value


# --- the handlers ------------------------------------------------------------------------


async def handle_status(target: ControlTarget, req: dict[str, Any]) -> Reply:
    return ok(status=target.status())


async def handle_reload(target: ControlTarget, req: dict[str, Any]) -> Reply:
    target.request_reload()
    return ok()


async def handle_restart(target: ControlTarget, req: dict[str, Any]) -> Reply:
    return ok(affected=await target.restart(target_arg(req)))


async def handle_stop(target: ControlTarget, req: dict[str, Any]) -> Reply:
    return ok(affected=await target.stop(target_arg(req)))


async def handle_start(target: ControlTarget, req: dict[str, Any]) -> Reply:
    return ok(affected=await target.start(target_arg(req)))


async def handle_logs(target: ControlTarget, req: dict[str, Any]) -> Reply:
    name = optional_str(req, "name")
    n = int_arg(req, "n", DEFAULT_TAIL, MAX_TAIL)
    follow = bool_arg(req, "follow")
    lines = target.log_tail(name, n)
    stream = target.subscribe_logs(name) if follow else None
    return Reply({"ok": True, "lines": lines}, stream)


async def handle_shutdown(target: ControlTarget, req: dict[str, Any]) -> Reply:
    target.request_shutdown()
    return ok()


HANDLERS: dict[str, tuple[Handler, frozenset[str]]] = {
    "status": (handle_status, frozenset()),
    "reload": (handle_reload, frozenset()),
    "restart": (handle_restart, frozenset({"target"})),
    "stop": (handle_stop, frozenset({"target"})),
    "start": (handle_start, frozenset({"target"})),
    "logs": (handle_logs, frozenset({"name", "n", "follow"})),
    "shutdown": (handle_shutdown, frozenset()),
}


def parse_request(line: bytes) -> tuple[Handler, dict[str, Any]]:
    try:
        req = json.loads(line)
    except ValueError:  # UnicodeDecodeError included
        raise BadRequest("request is not valid JSON") from None
    if not isinstance(req, dict):
        raise BadRequest("request must be a JSON object")
    cmd = req.get("cmd")
    if not isinstance(cmd, str):
        raise BadRequest('request needs "cmd": a string')
    entry = HANDLERS.get(cmd)
    if entry is None:
        raise BadRequest(f"unknown command {cmd[:50]!r} (expected one of {', '.join(HANDLERS)})")
    handler, accepted = entry
    extra = sorted(set(req) - accepted - {"cmd"})
    if extra:
        raise BadRequest(f"{cmd}: unknown argument {extra[0][:50]!r}")
    return handler, req


async def dispatch(target: ControlTarget, line: bytes) -> tuple[bytes, Reply]:
    """The encoded reply to one request line; never raises but for cancellation."""
    try:
        handler, req = parse_request(line)
        reply = await handler(target, req)
        return encode(reply.body), reply
    except BadRequest as exc:
        body = error_body(str(exc))
    except LookupError as exc:
        body = error_body(str(exc.args[0]) if exc.args else "not found")
    except Exception as exc:
        log.exception("control: request %.200r failed", line)
        body = error_body(f"internal error: {type(exc).__name__}: {exc}")
    return encode(body), Reply(body)


# --- one client ----------------------------------------------------------------------------


class Session:
    """One connected client: read a line, answer it, until it goes away or misbehaves."""

    def __init__(
        self, stream: anyio.abc.SocketStream, target: ControlTarget, send_timeout: float
    ) -> None:
        self.stream = stream
        self.reader = BufferedByteReceiveStream(stream)
        self.target = target
        self.send_timeout = send_timeout

    async def send(self, data: bytes) -> bool:
        """False when the client is gone or did not take the data in time: drop it."""
        with anyio.move_on_after(self.send_timeout):
            try:
                await self.stream.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                return False
            return True
        log.info("control: dropped a client that did not read its replies")
        return False

    async def run(self) -> None:
        async with self.stream:
            while True:
                try:
                    line = await self.reader.receive_until(b"\n", MAX_LINE)
                except anyio.DelimiterNotFound:
                    await self.send(encode(error_body("request line longer than 1 MiB")))
                    return
                except (anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
                    return
                if not line.strip():
                    continue
                data, reply = await dispatch(self.target, line)
                if not await self.send(data):
                    if reply.follow is not None:
                        await reply.follow.aclose()
                    return
                if reply.follow is not None:
                    await self.follow(reply.follow)
                    return

    async def follow(self, lines: anyio.abc.ObjectReceiveStream[str]) -> None:
        """Stream new log lines until the client goes away or the stream ends."""
        async with lines, anyio.create_task_group() as tg:
            tg.start_soon(self.until_client_leaves, tg.cancel_scope)
            async for line in lines:
                if not await self.send(encode({"line": line})):
                    break
            tg.cancel_scope.cancel()

    async def until_client_leaves(self, scope: anyio.CancelScope) -> None:
        # whatever the client sends now is ignored; its end of stream ends the follow
        gone = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
        with contextlib.suppress(*gone):
            while True:
                await self.reader.receive()
        scope.cancel()


# --- the listener --------------------------------------------------------------------------


async def serve_control(
    path: Path,
    target: ControlTarget,
    *,
    max_clients: int = MAX_CLIENTS,
    send_timeout: float = SEND_TIMEOUT,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the control socket at path until cancelled.

    Raises OperationFailed when it cannot bind (path too long, another daemon serving).
    task_status.started() is called once clients can connect.
    """
    sock, ours = bind_control_socket(path)
    try:
        listener = await anyio.abc.SocketListener.from_socket(sock)
    except BaseException:
        sock.close()
        remove_if_ours(path, ours)
        raise
    active = 0

    async def session(stream: anyio.abc.SocketStream) -> None:
        nonlocal active
        try:
            await Session(stream, target, send_timeout).run()
        finally:
            active -= 1

    try:
        async with listener, anyio.create_task_group() as tg:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except (OSError, anyio.BrokenResourceError) as exc:
                    # EMFILE and friends (anyio wraps them in BrokenResourceError): wait
                    # for a descriptor to free, the daemon and its processes run on
                    log.warning("control: accept failed: %s", exc.__cause__ or exc)
                    await anyio.sleep(ACCEPT_BACKOFF)
                    continue
                if active >= max_clients:
                    await refuse(stream, f"too many control clients (limit {max_clients})")
                    continue
                active += 1
                tg.start_soon(session, stream)
    finally:
        remove_if_ours(path, ours)


async def refuse(stream: anyio.abc.SocketStream, message: str) -> None:
    # a fresh connection's buffer is empty: this send completes at once or never
    with (
        anyio.move_on_after(REFUSE_TIMEOUT),
        contextlib.suppress(OSError, anyio.BrokenResourceError),
    ):
        await stream.send(encode(error_body(message)))
    with anyio.CancelScope(shield=True):
        await stream.aclose()
