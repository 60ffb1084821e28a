"""ssl loaded on first use (deferssl.py, issue 16): the daemon's loop runs without OpenSSL
in memory, and whatever uses TLS afterwards gets the real module, in asyncio and anyio
alike. Each case runs in a fresh interpreter: installing the deferral is process-wide.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

import pytest

from tests.helpers import PY

PRELUDE = """
import sys
from supervisord_lite.daemon import deferssl
assert deferssl.install()
import anyio

async def idle():
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with await anyio.connect_tcp("127.0.0.1", port):
            pass

anyio.run(idle)
assert not deferssl.loaded(), "ssl was loaded by a loop that used no TLS"
assert "_ssl" not in sys.modules
"""


def run(code: str, cwd: Path) -> str:
    proc = subprocess.run(
        [PY, "-c", textwrap.dedent(PRELUDE) + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_loop_without_tls_never_loads_openssl(tmp_path: Path) -> None:
    run("print('ok')", tmp_path)


def test_the_first_use_loads_the_real_module_everywhere(tmp_path: Path) -> None:
    run(
        """
        import ssl, asyncio.sslproto, anyio.streams.tls
        ctx = ssl.create_default_context()  # the first use
        assert deferssl.loaded() and "_ssl" in sys.modules
        assert type(sys.modules["ssl"]) is type(sys)  # the same object, a plain module now
        assert isinstance(ctx, ssl.SSLContext)
        assert asyncio.sslproto.SSLAgainErrors == (ssl.SSLWantReadError, ssl.SSLSyscallError)
        assert anyio.streams.tls.SSLContext is ssl.SSLContext
        import urllib.request  # what the webhook plugin uses for https://
        assert urllib.request._have_ssl
        """,
        tmp_path,
    )


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    args = ["-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"]
    args += ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)]
    subprocess.run(
        ["openssl", "req", *args],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return key, cert


def test_tls_in_the_loop_after_the_deferral_works(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """A TLS echo over loopback, asyncio's transport under anyio's stream."""
    key, cert = certificate
    out = run(
        f"""
        import ssl
        from anyio.streams.tls import TLSListener

        async def echo_once():
            server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            server.load_cert_chain({str(cert)!r}, {str(key)!r})
            client = ssl.create_default_context(cafile={str(cert)!r})
            tcp = await anyio.create_tcp_listener(local_host="127.0.0.1")
            port = tcp.extra(anyio.abc.SocketAttribute.local_port)
            async with TLSListener(tcp, server) as listener:
                async def serve(stream):
                    async with stream:
                        await stream.send(await stream.receive())

                async with anyio.create_task_group() as tg:
                    tg.start_soon(listener.serve, serve)
                    stream = await anyio.connect_tcp(
                        "127.0.0.1", port, tls=True, ssl_context=client
                    )
                    async with stream:
                        await stream.send(b"hello over tls")
                        print((await stream.receive()).decode())
                    tg.cancel_scope.cancel()

        anyio.run(echo_once)
        """,
        tmp_path,
    )
    assert out.strip() == "hello over tls"
