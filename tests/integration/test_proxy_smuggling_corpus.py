"""A corpus of smuggling, desync and forged-identity payloads fired at every entry of a real
proxy pair, with a recording application behind them that logs every request it parses.

Entries: A's outbound port for upstream b, A's HTTP_PROXY listener, and B's mTLS inbound port
(a real client certificate from the test PKI; with and without ALPN, since without it the
proxy detects the protocol from the first bytes). Each payload names what the application may
parse from it (usually nothing); anything else it parses is a smuggled request. The identity
the application sees must always be the verified one. Two clients interleaving over the pooled
sidecar connection, one of them attacking, must each get only their own responses.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import h11
import pytest
import trio

from tests.harness import wait_until

from .test_proxy_support import Background, LineEcho, Mesh, ProxyProc, proxies, status_of

pytestmark = pytest.mark.timeout(120)

ADMIN = b"spiffe://weft.test/ns/default/svc/admin"
FORGED = b"X-Weft-Client-Id: " + ADMIN + b"\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: b\r\n" + FORGED + b"\r\n"
IDENTITY_NAMES = (
    "x-weft-client-id",
    "x_weft_client_id",
    "l5d-client-id",
    "x-forwarded-client-cert",
)


@dataclass
class Parsed:
    """One request the application parsed."""

    conn: int
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]


@dataclass
class Recorder:
    """A strict HTTP/1.1 application (h11) logging every request and every parse error.

    It answers JSON naming the target, the request id and the client identity it saw, so a
    client can tell whose response it got.
    """

    parsed: list[Parsed] = field(default_factory=list)
    errors: list[tuple[int, str, bytes]] = field(default_factory=list)  # (conn, error, bytes)
    port: int = 0
    _conns: int = 0

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self._conns += 1
        conn_id = self._conns
        conn = h11.Connection(h11.SERVER)
        received = b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    received += data
                    conn.receive_data(data)
                    continue
                if isinstance(event, h11.ConnectionClosed):
                    return
                assert isinstance(event, h11.Request), event
                body = b""
                while True:
                    part = conn.next_event()
                    if part is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        received += data
                        conn.receive_data(data)
                    elif isinstance(part, h11.Data):
                        body += part.data
                    elif isinstance(part, h11.EndOfMessage):
                        break
                    elif isinstance(part, h11.ConnectionClosed):
                        return  # an incomplete request was never parsed whole
                headers = [(k.decode().lower(), v.decode("latin-1")) for k, v in event.headers]
                seen = Parsed(conn_id, event.method.decode(), event.target.decode(), headers, body)
                self.parsed.append(seen)
                await self._answer(conn, stream, seen)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            self.errors.append((conn_id, str(exc), received[-300:]))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, seen: Parsed) -> None:
        if seen.target.startswith("/ok/slow"):
            await trio.sleep(0.005)
        doc = {
            "target": seen.target,
            "request_id": (seen.header("x-request-id") or [""])[0],
            "client_id": seen.header("x-weft-client-id"),
        }
        body = json.dumps(doc).encode()
        resp = h11.Response(
            status_code=200,
            headers=[("content-type", "application/json"), ("content-length", str(len(body)))],
        )
        for event in (resp, h11.Data(data=body), h11.EndOfMessage()):
            await stream.send_all(conn.send(event))


@dataclass
class World:
    a: ProxyProc
    b: ProxyProc
    echo: ProxyProc
    app: Recorder
    mesh: Mesh
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("corpus")
    mesh = Mesh(root)
    timeouts = ("--header-timeout", "1s", "--body-timeout", "1s", "--detect-timeout", "1s")
    with Background() as bg:
        app = Recorder()
        bg.start(app.serve)
        line = LineEcho()
        bg.start(line.serve)
        b = ProxyProc(root, "b", mesh.snapshot("b", app_port=app.port), *timeouts)
        echo = ProxyProc(
            root,
            "echo",
            mesh.snapshot("echo", app_port=line.port, protocol="tcp"),
            "--tunnel-idle-timeout",
            "1s",
        )
        with proxies(b, echo):
            ups = [
                mesh.upstream("b", [b.inbound_port]),
                mesh.upstream("echo", [echo.inbound_port], protocol="tcp"),
            ]
            a = ProxyProc(
                root,
                "a",
                mesh.snapshot("a", upstreams=ups, forward_proxy=True),
                *timeouts,
                "--tunnel-idle-timeout",
                "2s",
            )
            with proxies(a):
                yield World(a, b, echo, app, mesh)


# -- the corpus --------------------------------------------------------------------------------

GET = b"GET /ok/%s HTTP/1.1\r\nHost: b\r\n"
POST = b"POST /ok/%s HTTP/1.1\r\nHost: b\r\n"
CLOSE = b"Connection: close\r\n"
CONNECT = b"CONNECT b:80 HTTP/1.1\r\nHost: b:80\r\n\r\n"


def chunked(name: bytes) -> bytes:
    return POST % name + b"Transfer-Encoding: chunked\r\n\r\n"


@dataclass(frozen=True)
class Case:
    payload: bytes
    # targets the application may parse from this payload, per entry ("*": any entry)
    expect: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def expected(self, entry: str) -> tuple[str, ...]:
        return self.expect.get(entry, self.expect.get("*", ()))


def refused(payload: bytes) -> Case:
    return Case(payload)


def served(payload: bytes, *targets: str) -> Case:
    return Case(payload, {"*": targets})


CORPUS: dict[str, Case] = {
    # Content-Length against Transfer-Encoding
    "cl-te": refused(
        POST % b"a" + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-cl": refused(
        POST % b"a"
        + b"Transfer-Encoding: chunked\r\nContent-Length: 90\r\n\r\n0\r\n\r\n"
        + SMUGGLED
    ),
    "te-chunked-identity": refused(
        POST % b"a" + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-identity-chunked": refused(
        POST % b"a" + b"Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-two-headers": refused(
        POST % b"a"
        + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"
        + SMUGGLED
    ),
    "te-chunked-twice": refused(
        POST % b"a" + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-tab-with-cl": refused(
        POST % b"a"
        + b"Transfer-Encoding:\tchunked\r\nContent-Length: 90\r\n\r\n0\r\n\r\n"
        + SMUGGLED
    ),
    "te-xchunked": refused(
        POST % b"a" + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-space-before-colon": refused(
        POST % b"a" + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-vertical-tab": refused(
        POST % b"a" + b"Transfer-Encoding: chunked\x0b\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    "te-http10": refused(
        b"POST /ok/a HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + SMUGGLED
    ),
    # a Connection header naming a framing header
    "connection-content-length": refused(
        POST % b"a"
        + b"Connection: content-length\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED
    ),
    "connection-keep-alive-content-length": refused(
        POST % b"a"
        + b"Connection: keep-alive, Content-Length\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED)
        + SMUGGLED
    ),
    "connection-transfer-encoding": refused(
        chunked(b"a")[:-2]
        + b"Connection: transfer-encoding\r\n\r\n"
        + b"%x\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"\r\n0\r\n\r\n"
    ),
    "connection-host": refused(GET % b"a" + b"Connection: host\r\n\r\n" + SMUGGLED),
    # Content-Length values
    "cl-twice-different": refused(
        POST % b"a" + b"Content-Length: 0\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
    ),
    "cl-twice-same": refused(POST % b"a" + b"Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd"),
    "cl-list": refused(POST % b"a" + b"Content-Length: 4, 4\r\n\r\nabcd" + SMUGGLED),
    "cl-plus-sign": refused(POST % b"a" + b"Content-Length: +4\r\n\r\nabcd" + SMUGGLED),
    "cl-minus-sign": refused(POST % b"a" + b"Content-Length: -1\r\n\r\n" + SMUGGLED),
    "cl-inner-space": refused(POST % b"a" + b"Content-Length: 1 0\r\n\r\n" + SMUGGLED),
    "cl-hex": refused(POST % b"a" + b"Content-Length: 0x04\r\n\r\nabcd" + SMUGGLED),
    "cl-huge": refused(POST % b"a" + b"Content-Length: 99999999999999999999\r\n\r\n" + SMUGGLED),
    "cl-space-before-colon": refused(POST % b"a" + b"Content-Length : 0\r\n\r\n" + SMUGGLED),
    # line endings, versions, header syntax
    "bare-lf": refused(b"GET /ok/a HTTP/1.1\nHost: b\n" + FORGED.replace(b"\r", b"") + b"\n"),
    "bare-lf-one-line": refused(
        GET % b"a" + b"X-A: 1\nContent-Length: %d\r\n\r\n" % len(SMUGGLED) + SMUGGLED
    ),
    "bare-cr": refused(GET % b"a" + b"X-A: 1\rContent-Length: 5\r\n\r\n" + SMUGGLED),
    "http-1.2": refused(b"GET /ok/a HTTP/1.2\r\nHost: b\r\n" + FORGED + b"\r\n"),
    "http-2.0-line": refused(b"GET /ok/a HTTP/2.0\r\nHost: b\r\n" + FORGED + b"\r\n"),
    "http-0.9": refused(b"GET /ok/a\r\n\r\n" + SMUGGLED),
    "h2-preface": refused(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 18),
    "lower-case-method": refused(b"get /ok/a HTTP/1.1\r\nHost: b\r\n\r\n" + SMUGGLED),
    "obs-fold": refused(GET % b"a" + b"X-A: 1\r\n Content-Length: 38\r\n\r\n" + SMUGGLED),
    "nul-in-header": refused(GET % b"a" + b"X-A: a\x00b\r\n\r\n" + SMUGGLED),
    "nul-in-target": refused(b"GET /ok/a\x00b HTTP/1.1\r\nHost: b\r\n\r\n" + SMUGGLED),
    "space-in-header-name": refused(GET % b"a" + b"X A: 1\r\n\r\n" + SMUGGLED),
    "two-hosts": refused(GET % b"a" + b"Host: evil\r\n\r\n" + SMUGGLED),
    "no-host": refused(b"GET /ok/a HTTP/1.1\r\nAccept: */*\r\n\r\n" + SMUGGLED),
    "huge-header": refused(GET % b"a" + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\n" + SMUGGLED),
    "many-headers": refused(
        GET % b"a" + b"".join(b"X-%d: v\r\n" % i for i in range(150)) + b"\r\n" + SMUGGLED
    ),
    "odd-expectation": refused(POST % b"a" + b"Expect: 200-ok\r\nContent-Length: 0\r\n\r\n"),
    # chunked bodies
    "chunk-negative": refused(chunked(b"a") + b"-1\r\n" + SMUGGLED),
    "chunk-hex-prefix": refused(chunked(b"a") + b"0x26\r\n" + SMUGGLED),
    "chunk-oversized": refused(chunked(b"a") + b"10000000000000026\r\n" + SMUGGLED),
    "chunk-not-hex": refused(chunked(b"a") + b"zz\r\n" + SMUGGLED),
    "chunk-size-bare-lf": refused(chunked(b"a") + b"1\nx\r\n0\r\n\r\n" + SMUGGLED),
    "chunk-data-bare-lf": refused(chunked(b"a") + b"1\r\nx\n0\r\n\r\n" + SMUGGLED),
    "chunk-short-data": refused(chunked(b"a") + b"5\r\nab\r\n0\r\n\r\n" + SMUGGLED),
    "chunk-extension-bare-lf": refused(chunked(b"a") + b"1;a=b\nx\r\n0\r\n\r\n" + SMUGGLED),
    "chunk-extension-unquoted-space": refused(chunked(b"a") + b"1;a=b c\r\nx\r\n0\r\n\r\n"),
    "chunk-extension-endless": refused(chunked(b"a") + b"1;" + b"a" * 5000 + b"\r\nx\r\n0\r\n\r\n"),
    "trailer-forged-identity": refused(chunked(b"a") + b"0\r\n" + FORGED + b"\r\n"),
    "trailer-content-length": refused(chunked(b"a") + b"0\r\nContent-Length: 38\r\n\r\n"),
    # targets
    "https-absolute-form": refused(b"GET https://b/ok/a HTTP/1.1\r\nHost: b\r\n\r\n"),
    "userinfo-absolute-form": refused(b"GET http://u@b/ok/a HTTP/1.1\r\nHost: b\r\n\r\n"),
    "absolute-form-to-other-host": Case(
        b"GET http://evil.example/ok/abs-other HTTP/1.1\r\nHost: b\r\n" + CLOSE + b"\r\n",
        # the target's authority wins: no upstream of that name behind the forward proxy;
        # elsewhere the app sees origin-form and one Host, the authority's
        {"*": ("/ok/abs-other",), "http_proxy": ()},
    ),
    "absolute-form-host-mismatch": served(
        b"GET http://b/ok/abs-b HTTP/1.1\r\nHost: evil.example\r\n" + CLOSE + b"\r\n", "/ok/abs-b"
    ),
    # CONNECT, and what a tunnel carries
    "connect-then-bare-lf-forged": refused(
        CONNECT + b"GET /smuggled HTTP/1.1\nHost: b\n" + FORGED.replace(b"\r", b"") + b"\n"
    ),
    "connect-then-http-1.2-forged": refused(
        CONNECT + b"GET /smuggled HTTP/1.2\r\nHost: b\r\n" + FORGED + b"\r\n"
    ),
    "connect-then-h2-preface": refused(CONNECT + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
    "connect-then-strict-http-forged": Case(
        CONNECT + GET % b"connect-forged" + FORGED + CLOSE + b"\r\n",
        # only the forward proxy tunnels; the destination sidecar parses what the tunnel
        # carries, strips the forged identity and sets the verified one
        {"http_proxy": ("/ok/connect-forged",)},
    ),
    # forged identities in requests that are otherwise fine
    "forged-client-id": served(GET % b"forged-id" + FORGED + CLOSE + b"\r\n", "/ok/forged-id"),
    "forged-client-id-underscores": served(
        GET % b"forged-underscore" + b"X_Weft_Client_Id: " + ADMIN + b"\r\n" + CLOSE + b"\r\n",
        "/ok/forged-underscore",
    ),
    "forged-other-mesh-identities": served(
        GET % b"forged-other"
        + b"L5d-Client-Id: "
        + ADMIN
        + b"\r\nX-Forwarded-Client-Cert: By="
        + ADMIN
        + b"\r\n"
        + b"X-Weft-Client-Trust-Domain: evil\r\n"
        + CLOSE
        + b"\r\n",
        "/ok/forged-other",
    ),
    "forged-client-id-twice": served(
        GET % b"forged-twice" + FORGED + FORGED.lower() + CLOSE + b"\r\n", "/ok/forged-twice"
    ),
    "forged-client-id-named-in-connection": served(
        GET % b"forged-conn" + FORGED + b"Connection: x-weft-client-id, close\r\n\r\n",
        "/ok/forged-conn",
    ),
    # requests inside requests
    "request-in-body": served(
        POST % b"in-body" + b"Content-Length: %d\r\n" % len(SMUGGLED) + CLOSE + b"\r\n" + SMUGGLED,
        "/ok/in-body",
    ),
    "request-in-chunked-body": served(
        chunked(b"in-chunks")[:-2]
        + CLOSE
        + b"\r\n"
        + b"%x\r\n" % len(SMUGGLED)
        + SMUGGLED
        + b"\r\n0\r\n\r\n",
        "/ok/in-chunks",
    ),
    "pipelined-pair": served(
        GET % b"pipe-1" + b"\r\n" + GET % b"pipe-2" + FORGED + CLOSE + b"\r\n",
        "/ok/pipe-1",
        "/ok/pipe-2",
    ),
    "te-tab-alone": served(
        POST % b"te-tab" + b"Transfer-Encoding:\tchunked\r\n" + CLOSE + b"\r\n1\r\nx\r\n0\r\n\r\n",
        "/ok/te-tab",
    ),
    "h2c-upgrade": served(
        GET % b"h2c"
        + b"Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\n"
        + b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n"
        + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        "/ok/h2c",
    ),
}

_STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5][0-9][0-9] ")
ENTRIES = ("outbound", "http_proxy", "inbound", "inbound_alpn")


def _tls_context(world: World, *, alpn: bool) -> ssl.SSLContext:
    tls = world.mesh.tls("a")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(tls.bundle)
    ctx.load_cert_chain(tls.cert, tls.key)
    if alpn:
        ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def fire(world: World, entry: str, payload: bytes, *, timeout: float = 6.0) -> bytes:
    """Send `payload` to `entry`; read until the proxy closes (or `timeout`)."""
    if entry == "outbound":
        port = world.a.listener("upstream/b")
    elif entry == "http_proxy":
        port = world.a.listener("forward")
    else:
        port = world.b.inbound_port
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s: socket.socket = raw
    if entry.startswith("inbound"):
        s = _tls_context(world, alpn=entry == "inbound_alpn").wrap_socket(raw)
    chunks = []
    deadline = time.monotonic() + timeout
    with s:
        try:
            s.sendall(payload)  # the proxy may answer and close before all of it is sent
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except (TimeoutError, ConnectionResetError, ssl.SSLError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _check_identity(world: World, seen: Parsed) -> None:
    verified = world.mesh.spiffe("a")
    assert seen.header("x-weft-client-id") == [verified], seen
    for name in IDENTITY_NAMES[1:]:
        assert not seen.header(name), (name, seen)
    assert not [
        k for k, _ in seen.headers if k.startswith("x-weft-client-") and k != IDENTITY_NAMES[0]
    ]


def test_the_corpus_has_at_least_forty_payloads() -> None:
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("name", list(CORPUS))
def test_payload_reaches_the_app_only_as_the_request_the_client_legitimately_sent(
    world: World, entry: str, name: str
) -> None:
    case = CORPUS[name]
    with world.lock:
        before, errors = len(world.app.parsed), len(world.app.errors)
        answer = fire(world, entry, case.payload)
        expected = case.expected(entry)
        if expected:
            wait_until(
                lambda: len(world.app.parsed) - before >= len(expected),
                timeout=5,
                what=f"the app to parse {expected}",
            )
        seen = world.app.parsed[before:]
        garbled = world.app.errors[errors:]
    assert [s.target for s in seen] == list(expected), (name, entry, answer[:300])
    for s in seen:
        _check_identity(world, s)
        assert not s.header("upgrade"), s  # h2c is never switched to
        if name.startswith("absolute-form"):  # one Host, the target's authority
            assert s.header("host") == ["b" if s.target == "/ok/abs-b" else "evil.example"], s
    assert not garbled, garbled  # nothing unparseable reached the app either
    if not expected and entry != "http_proxy":
        # refused: an error status (never a 2xx), or a closed connection with no answer
        assert b"HTTP/1.1 2" not in answer, (name, entry, answer[:300])
    answers = len(_STATUS_LINE.findall(answer))
    assert answers <= max(1, len(expected)) + name.startswith("connect"), answer[:600]


def test_the_corpus_fired_from_four_threads_at_once_smuggles_nothing(world: World) -> None:
    """Every payload at every entry again, concurrently; then the app's whole log (stragglers
    of the sequential run included) holds only requests clients sent legitimately."""
    expected = sorted(t for case in CORPUS.values() for e in ENTRIES for t in case.expected(e))
    with world.lock:
        before = len(world.app.parsed)

        def run(entry: str) -> None:
            for case in CORPUS.values():
                fire(world, entry, case.payload)

        threads = [threading.Thread(target=run, args=(entry,)) for entry in ENTRIES]
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        wait_until(
            lambda: len(world.app.parsed) - before >= len(expected),
            timeout=10,
            what="the app to parse every legitimate request",
        )
        assert sorted(s.target for s in world.app.parsed[before:]) == expected
        for seen in world.app.parsed:
            assert seen.target != "/smuggled", seen
            assert seen.target.startswith("/ok/"), seen
            _check_identity(world, seen)
        assert not world.app.errors, world.app.errors
    for proxy in (world.a, world.b):
        assert proxy.proc.alive(), proxy.log()[-2000:]
        assert proxy.get("/ready")[0] == 200


def _victim(world: World, entry: str, n: int, out: list[str]) -> None:
    """Keep-alive requests tagged with request ids; records every mismatch it sees."""
    port = world.a.listener("upstream/b" if entry == "outbound" else "forward")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for i in range(n):
            rid = f"victim-{entry}-{i}"
            conn.request("GET", f"/ok/slow/{rid}", headers={"Host": "b", "X-Request-Id": rid})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            if (resp.status, doc["request_id"], doc["target"]) != (200, rid, f"/ok/slow/{rid}"):
                out.append(f"{rid} got {resp.status} {doc}")
    finally:
        conn.close()


# what used to desynchronise a pooled connection, when it was let through
_DESYNC = (
    "connection-content-length",
    "connection-keep-alive-content-length",
    "connection-transfer-encoding",
    "connection-host",
    "cl-te",
    "te-cl",
    "cl-twice-different",
    "bare-lf-one-line",
    "obs-fold",
    "chunk-size-bare-lf",
)


def _attacker(world: World, entry: str, stop: threading.Event) -> int:
    """Smuggling payloads (each its own connection) between legitimate requests of its own."""
    fired = 0
    payloads = [CORPUS[name].payload for name in _DESYNC]
    while not stop.is_set():
        for payload in payloads:
            fire(world, entry, payload, timeout=3)
            fired += 1
            if stop.is_set():
                break
    return fired


@pytest.mark.parametrize("entry", ["outbound", "http_proxy"])
def test_two_clients_interleaving_over_pooled_connections_each_get_only_their_own_responses(
    world: World, entry: str
) -> None:
    handshakes = world.a.metric("weft_proxy_tls_handshakes_total", direction="outbound")
    mismatches: list[str] = []
    stop = threading.Event()
    with world.lock:
        attacker = threading.Thread(target=_attacker, args=(world, entry, stop))
        attacker.start()
        try:
            victims = [
                threading.Thread(target=_victim, args=(world, entry, 60, mismatches))
                for _ in range(2)
            ]
            for t in victims:
                t.start()
            for t in victims:
                t.join(60)
        finally:
            stop.set()
            attacker.join(30)
        assert not any(t.is_alive() for t in victims)
    assert mismatches == []
    # the victims' 120 requests shared a few pooled sidecar connections
    opened = world.a.metric("weft_proxy_tls_handshakes_total", direction="outbound") - handshakes
    assert opened < 40, opened


def test_refusals_are_counted_by_reason(world: World) -> None:
    answer = fire(world, "outbound", CORPUS["connection-content-length"].payload)
    assert status_of(answer) == 400 and b"Connection: close" in answer
    assert b"framing headers cannot be hop-by-hop" in answer
    assert (
        world.a.metric(
            "weft_proxy_http_refused_total",
            direction="outbound",
            reason="connection_names_framing_header",
        )
        >= 1
    )
    fire(world, "inbound", CORPUS["bare-lf"].payload)
    assert world.b.metric("weft_proxy_http_refused_total", reason="not_http1") >= 1
