"""The floor under the sidecar: the same two-hop mTLS path with nothing but the byte moves.

    wrk -c32 → skeleton A (plain in, TLS out) → skeleton B (TLS in, plain out) → nginx (1 KB)

Each skeleton is the least an HTTP/1.1 proxy on trio can do per request: wait for a request
head, send it on over one pooled connection per client connection, wait for the response
head, read its Content-Length body, send it back. It uses the proxy's own byte movers
(`proxy._stream`: non-blocking sockets and `ssl.SSLSocket` driven by trio's readiness waits)
and `httptools`-free head finding. No routing, balancing, metrics, timeouts, header checks or
rewriting: what it costs per request is what trio, `ssl` and the kernel cost on this machine,
and the real proxy's figure minus it is what Weft's own logic costs.

    .venv/bin/python bench/skeleton_proxy.py [--duration 8] [--repeat 3]

Three pairs, interleaved, on the same nginx: `epoll` (the skeleton without trio: one
level-triggered epoll, callbacks, each socket registered once), `skeleton` (on trio) and
`weft` (the real `weft proxy` pair, as bench/proxy.py starts it). Prints req/s and CPU µs per
request per proxy.
"""

from __future__ import annotations

import argparse
import json
import shutil
import ssl
import statistics
import sys
import tempfile
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._load import requests_in, wrk  # noqa: E402
from bench._pairs import (  # noqa: E402
    Pair,
    Stack,
    certificates,
    cpu_seconds,
    free_port,
    snapshots,
    start_nginx,
    start_pair,
    start_weft_pair,
    weft_command,
)
from proxy._errors import StreamClosed, TlsRefused  # noqa: E402
from proxy._stream import Stream, TlsStream, accept, bind_listener, connect  # noqa: E402


def _body_length(head: bytes) -> int:
    lower = head.lower()
    i = lower.find(b"\r\ncontent-length:")
    if i < 0:
        return 0
    end = lower.find(b"\r\n", i + 2)
    return int(head[i + 17 : end])


async def _read_message(stream: Stream, buf: bytes) -> tuple[bytes, bytes] | None:
    """One head plus its Content-Length body from `buf` and the stream; (message, rest)."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            need = end + 4 + _body_length(buf[: end + 4])
            if len(buf) >= need:
                return buf[:need], buf[need:]
        data = await stream.recv_later() if buf else await stream.recv()
        if not data:
            return None
        buf += data


async def _serve(
    down: Stream, up_host: str, up_port: int, client_ctx: ssl.SSLContext | None
) -> None:
    sock = await connect(up_host, up_port, timeout=5)
    if client_ctx is not None:
        up: Stream = TlsStream(client_ctx.wrap_socket(sock, do_handshake_on_connect=False))
        await up.handshake()  # type: ignore[attr-defined]
    else:
        up = Stream(sock)
    down_buf = up_buf = b""
    try:
        while True:
            got = await _read_message(down, down_buf)
            if got is None:
                return
            request, down_buf = got
            await up.send_all(request)
            got = await _read_message(up, up_buf)
            if got is None:
                return
            response, up_buf = got
            await down.send_all(response)
    finally:
        up.close()
        down.close()


async def skeleton(
    listen: int, up_port: int, server_ctx: ssl.SSLContext | None, client_ctx: ssl.SSLContext | None
) -> None:
    listener = bind_listener("127.0.0.1", listen)

    async def one(sock: object) -> None:
        down: Stream
        if server_ctx is not None:
            down = TlsStream(
                server_ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)  # type: ignore[arg-type]
            )
        else:
            down = Stream(sock)  # type: ignore[arg-type]
        try:
            if isinstance(down, TlsStream):
                await down.handshake()
            await _serve(down, "127.0.0.1", up_port, client_ctx)
        except (StreamClosed, TlsRefused):
            down.close()  # a port probe, or the load generator leaving

    async with trio.open_nursery() as nursery:
        if REACTOR:
            import proxy._stream as streams
            from proxy._reactor import Reactor

            reactor = Reactor()
            trio_closing = streams.notify_closing

            def closing(sock: object) -> None:
                reactor.notify_closing(sock)  # type: ignore[arg-type]
                trio_closing(sock)

            streams.wait_readable = reactor.wait_readable  # type: ignore[assignment]
            streams.notify_closing = closing  # type: ignore[assignment]
            nursery.start_soon(reactor.run)
        while True:
            nursery.start_soon(one, await accept(listener))


REACTOR = False


def _contexts(tls: object) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(tls.cert, tls.key)  # type: ignore[attr-defined]
    server.load_verify_locations(tls.bundle)  # type: ignore[attr-defined]
    server.verify_mode = ssl.CERT_REQUIRED
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_cert_chain(tls.cert, tls.key)  # type: ignore[attr-defined]
    client.load_verify_locations(tls.bundle)  # type: ignore[attr-defined]
    client.check_hostname = False  # SPIFFE certificates carry a URI, not a host name
    return server, client


def epoll_skeleton(
    listen: int, up_port: int, server_ctx: ssl.SSLContext | None, client_ctx: ssl.SSLContext | None
) -> None:
    """The same skeleton without trio: one level-triggered epoll, each socket registered once
    (no re-arming per wait), callbacks instead of tasks. What trio's scheduling costs is the
    difference between this and `skeleton`."""
    import select
    import socket

    listener = bind_listener("127.0.0.1", listen)
    ep = select.epoll()
    ep.register(listener.fileno(), select.EPOLLIN)
    # fd -> [sock, peer fd, buffer]
    conns: dict[int, list[object]] = {}

    def read_some(sock: socket.socket) -> bytes | None:
        try:
            return sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return None
        except (ssl.SSLError, OSError):
            return b""

    def close(fd: int) -> None:
        for end in (fd, conns[fd][1]):
            entry = conns.pop(end, None)  # type: ignore[call-overload]
            if entry is not None:
                ep.unregister(end)
                entry[0].close()  # type: ignore[attr-defined]

    while True:
        for fd, _ in ep.poll():
            if fd == listener.fileno():
                try:
                    down, _ = listener.accept()
                except BlockingIOError:
                    continue
                down.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                up = socket.create_connection(("127.0.0.1", up_port))
                up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    if server_ctx is not None:  # handshakes blocking: connections are long-lived
                        down = server_ctx.wrap_socket(down, server_side=True)
                    if client_ctx is not None:
                        up = client_ctx.wrap_socket(up)
                except (ssl.SSLError, OSError):
                    down.close()
                    up.close()
                    continue
                down.setblocking(False)
                up.setblocking(False)
                conns[down.fileno()] = [down, up.fileno(), b""]
                conns[up.fileno()] = [up, down.fileno(), b""]
                ep.register(down.fileno(), select.EPOLLIN)
                ep.register(up.fileno(), select.EPOLLIN)
                continue
            entry = conns.get(fd)
            if entry is None:
                continue
            sock = entry[0]
            while True:
                data = read_some(sock)  # type: ignore[arg-type]
                if data is None:
                    break
                if not data:
                    close(fd)
                    break
                buf = entry[2] + data  # type: ignore[operator]
                end = buf.find(b"\r\n\r\n")
                if end >= 0 and len(buf) >= end + 4 + _body_length(buf[: end + 4]):
                    entry[2] = b""
                    conns[entry[1]][0].sendall(buf)  # type: ignore[index,attr-defined]
                else:
                    entry[2] = buf
                if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                    break


class _Paths:
    def __init__(self, doc: dict[str, str]) -> None:
        self.cert, self.key, self.bundle = doc["cert"], doc["key"], doc["bundle"]


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        role, listen, upstream, directory = sys.argv[2:6]
        doc = json.loads((Path(directory) / f"{role}-paths.json").read_text())
        server, client = _contexts(_Paths(doc))
        global REACTOR
        REACTOR = len(sys.argv) > 6 and sys.argv[6] == "reactor"
        if len(sys.argv) > 6 and sys.argv[6] == "epoll":
            epoll_skeleton(
                int(listen),
                int(upstream),
                server if role == "b" else None,
                client if role == "a" else None,
            )
            return 0
        trio.run(
            skeleton,
            int(listen),
            int(upstream),
            server if role == "b" else None,
            client if role == "a" else None,
        )
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per wrk run")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs (median)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    args = parser.parse_args()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    work = Path(tempfile.mkdtemp(prefix="weft-skeleton-"))
    work.chmod(0o755)
    stack = Stack(work)
    try:
        nginx_port = start_nginx(stack, nginx)
        ca, tls = certificates(work)
        for name, paths in tls.items():
            (work / f"{name}-paths.json").write_text(
                json.dumps(
                    {"cert": str(paths.cert), "key": str(paths.key), "bundle": str(paths.bundle)}
                )
            )
        me = [sys.executable, str(Path(__file__).resolve()), "--child"]

        def skeleton_pair(tag: str, *mode: str) -> Pair:
            """A pair of this script's skeletons (`--child`), `skel-{tag}a` and `skel-{tag}b`."""
            b_port, a_port = free_port(), free_port()
            return start_pair(
                stack,
                b=(f"skel-{tag}b", [*me, "b", str(b_port), str(nginx_port), str(work), *mode]),
                a=(f"skel-{tag}a", [*me, "a", str(a_port), str(b_port), str(work), *mode]),
                a_port=a_port,
                b_port=b_port,
                wait=False,
            )

        # the skeleton pair; below, the same without trio (epoll) and on the reactor
        skel = skeleton_pair("")
        # the real pair, as bench/proxy.py starts it
        b_port, a_port = free_port(), free_port()
        docs = snapshots(ca, tls, a_port=a_port, b_port=b_port, app_port=nginx_port)
        weft = start_weft_pair(stack, docs, command=weft_command(), wait=False)
        epoll = skeleton_pair("e", "epoll")
        reactor = skeleton_pair("r", "reactor")
        for pair in (skel, weft, epoll, reactor):
            pair.wait()
        paths = {
            "epoll": (epoll.a_port, epoll.pids),
            "skeleton": (skel.a_port, skel.pids),
            "reactor": (reactor.a_port, reactor.pids),
            "weft": (weft.a_port, weft.pids),
        }
        for port, _ in paths.values():
            wrk(port, connections=args.connections, duration=2)  # warm up, and it answers
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in paths}
        for i in range(args.repeat):
            for name, (port, pids) in paths.items():
                cpu0 = sum(cpu_seconds(p) for p in pids)
                text = wrk(port, connections=args.connections, duration=args.duration)
                cpu1 = sum(cpu_seconds(p) for p in pids)
                total = requests_in(text)
                if "Non-2xx" in text or "Socket errors" in text:
                    print(f"warning: errors on {name}:\n{text}", file=sys.stderr)
                us = (cpu1 - cpu0) / total * 1e6 / 2
                results[name].append((total / args.duration, us))
                rps = total / args.duration
                print(f"  run {i + 1} {name:9} {rps:8.0f} req/s {us:6.1f} µs CPU", flush=True)
        print()
        print("| path | req/s (median) | CPU µs per request per proxy (median) |")
        print("|---|---:|---:|")
        for name, runs in results.items():
            rps = statistics.median(r for r, _ in runs)
            us = statistics.median(u for _, u in runs)
            print(f"| {name} | {rps:,.0f} | {us:.1f} |")
        return 0
    finally:
        stack.stop()
        for log in work.glob("skel-*.log"):
            text = log.read_text(errors="replace").strip()
            if text:
                print(f"{log.name}:\n{text[:3000]}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
