"""`ssl`, loaded when something first uses it instead of when asyncio and anyio import it.

Why: the daemon speaks no TLS (its control socket is a Unix socket, its ready checks
plain TCP and HTTP), yet `import ssl` by asyncio and anyio maps OpenSSL (libssl and
libcrypto) and builds ssl.py's enums: about 4 MB, a sixth of the idle daemon's RSS
(issue 16). A plugin that does speak TLS (webhook.py to an https:// URL) still gets the
real module, the first time it touches it.

How: `install` puts a module object under the name `ssl` whose first attribute access
executes the real ssl.py into that same object (as importlib.util.LazyLoader does), so
every `import ssl`, before or after, ends up with the one real module. A few reads would
load it with no TLS in sight (STAND_INS): asyncio.sslproto and anyio.streams.tls keep ssl
classes when they are imported, and asyncio's sock_connect, sock_recv... ask whether the
socket is an ssl.SSLSocket. Those reads get stand-in classes. That is exact while the
real module is not loaded: no object is an instance of its classes and none of its
errors is raised yet. When it loads, `_load` puts the real classes where the importers
kept stand-ins (a TLS transport must retry on the real SSLWantReadError).
Any other read loads the real module: the daemon then costs what it did before, and
tests/test_imports.py says so. Rejected: stopping the import (anyio imports ssl
unconditionally); stand-ins left in place after the load.
"""

from __future__ import annotations

import importlib.machinery
import sys
import threading
import types
from typing import Any

# (reading module, name): reads answered with a stand-in until the real ssl is loaded
STAND_INS = {
    ("asyncio.sslproto", "SSLWantReadError"),  # at import: SSLAgainErrors, kept
    ("asyncio.sslproto", "SSLSyscallError"),
    ("anyio.streams.tls", "SSLContext"),  # at import: `from ssl import SSLContext`, kept
    ("asyncio.base_events", "SSLSocket"),  # _check_ssl_socket: isinstance, each call
}


class StandIn(Exception):
    """What an early reader holds until the real ssl is loaded."""


class DeferredSSL(types.ModuleType):
    """`ssl` before its first use; the real module (same object) after it."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system's probes (`__path__`...): not a use
            raise AttributeError(name)
        reader = sys._getframe(1).f_globals.get("__name__", "")
        if (reader, name) in STAND_INS:
            return type(name, (StandIn,), {"__module__": "ssl"})
        _load(self)
        return getattr(self, name)


_lock = threading.Lock()


def install() -> bool:
    """Make `ssl` load on first use; False (nothing done) when it is imported already."""
    if "ssl" in sys.modules:
        return False
    spec = importlib.machinery.PathFinder.find_spec("ssl")
    if spec is None or spec.loader is None:
        return False
    module = DeferredSSL("ssl")
    module.__spec__ = spec
    module.__file__ = spec.origin
    module.__loader__ = spec.loader
    sys.modules["ssl"] = module
    return True


def loaded() -> bool:
    """Whether the real ssl is in memory (libssl and libcrypto mapped)."""
    module = sys.modules.get("ssl")
    return module is not None and not isinstance(module, DeferredSSL)


def _load(module: DeferredSSL) -> None:
    with _lock:
        if not isinstance(module, DeferredSSL):  # another thread was first
            return
        spec = module.__spec__
        assert spec is not None and spec.loader is not None
        module.__class__ = types.ModuleType  # type: ignore[assignment]  # plain lookups now
        try:
            spec.loader.exec_module(module)
        except BaseException:
            module.__class__ = DeferredSSL
            raise
    _replace_stand_ins(module)


def stand_in(obj: object) -> bool:
    return isinstance(obj, type) and issubclass(obj, StandIn)


def _replace_stand_ins(real: types.ModuleType) -> None:
    tls = sys.modules.get("anyio.streams.tls")
    if tls is not None and stand_in(getattr(tls, "SSLContext", None)):
        tls.SSLContext = real.SSLContext  # type: ignore[attr-defined]
    sslproto = sys.modules.get("asyncio.sslproto")
    if sslproto is not None and any(map(stand_in, getattr(sslproto, "SSLAgainErrors", ()))):
        sslproto.SSLAgainErrors = (real.SSLWantReadError, real.SSLSyscallError)  # type: ignore[attr-defined]
