"""What the `h2` library costs per request, measured before the proxy used it.

One gRPC-shaped unary exchange through two in-memory `h2.connection.H2Connection`s (client and
server, no sockets): the request's HEADERS + one DATA frame with END_STREAM, the response's
HEADERS + DATA + trailers, each side parsing what the other framed, plus the WINDOW_UPDATE
credit the proxy grants back. A proxy does this twice per request (its downstream connection
is a server, its upstream one a client), so the per-request figure below is the framing cost
of one hop; the proxy pays it twice. Beside it, for scale: httptools parsing an HTTP/1.1
request head and a response head (what the HTTP/1.1 path costs for the same job).

    .venv/bin/python bench/h2_framing.py [--requests 20000] [--streams 1]

`--streams N` opens N streams before ending any (multiplexed), which is how concurrent gRPC
calls share one connection.
"""

from __future__ import annotations

import argparse
import time

import h2.config
import h2.connection
import h2.events
import httptools

REQUEST = [
    (b":method", b"POST"),
    (b":scheme", b"http"),
    (b":path", b"/weft.bench.Echo/Unary"),
    (b":authority", b"echo"),
    (b"content-type", b"application/grpc"),
    (b"te", b"trailers"),
    (b"grpc-timeout", b"5S"),
    (b"user-agent", b"grpc-python/1.85"),
]
RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]
TRAILERS = [(b"grpc-status", b"0"), (b"grpc-message", b"")]
MESSAGE = b"\x00\x00\x00\x04\x00" + b"x" * 1024  # a 1 KiB gRPC message


def pair(validate: bool = True) -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    checks = {
        "validate_outbound_headers": validate,
        "normalize_outbound_headers": validate,
        "validate_inbound_headers": validate,
        "normalize_inbound_headers": validate,
    }
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, **checks))
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None, **checks)
    )
    client.initiate_connection()
    server.initiate_connection()
    server.receive_data(client.data_to_send())
    client.receive_data(server.data_to_send())
    server.receive_data(client.data_to_send())
    return client, server


def h2_exchanges(requests: int, streams: int, validate: bool = True) -> float:
    """CPU seconds per request for one hop's framing (both ends)."""
    client, server = pair(validate)
    started = time.process_time()
    done = 0
    while done < requests:
        ids = []
        for _ in range(streams):
            sid = client.get_next_available_stream_id()
            client.send_headers(sid, REQUEST)
            client.send_data(sid, MESSAGE, end_stream=True)
            ids.append(sid)
        for event in server.receive_data(client.data_to_send()):
            if isinstance(event, h2.events.DataReceived):
                server.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        for sid in ids:
            server.send_headers(sid, RESPONSE)
            server.send_data(sid, MESSAGE)
            server.send_headers(sid, TRAILERS, end_stream=True)
        for event in client.receive_data(server.data_to_send()):
            if isinstance(event, h2.events.DataReceived):
                client.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        server.receive_data(client.data_to_send())
        done += streams
    return (time.process_time() - started) / done


def h1_heads(requests: int) -> float:
    """CPU seconds per request for httptools parsing a request and a response head."""
    req = (
        b"POST /weft.bench.Echo/Unary HTTP/1.1\r\nHost: echo\r\nContent-Type: application/json\r\n"
        b"User-Agent: bench\r\nContent-Length: 1029\r\n\r\n"
    )
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1029\r\n\r\n"

    class Sink:
        def on_header(self, name: bytes, value: bytes) -> None:
            pass

    started = time.process_time()
    for _ in range(requests):
        httptools.HttpRequestParser(Sink()).feed_data(req)
        httptools.HttpResponseParser(Sink()).feed_data(resp)
    return (time.process_time() - started) / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--streams", type=int, default=1)
    args = parser.parse_args()
    h2_exchanges(1000, args.streams)  # warm up
    rows = [
        (
            f"h2: one hop, {args.streams} stream(s) at a time",
            h2_exchanges(args.requests, args.streams),
        ),
        ("h2: one hop, 20 streams at a time", h2_exchanges(args.requests, 20)),
        ("h2: header validation off", h2_exchanges(args.requests, 1, validate=False)),
        ("HTTP/1.1: httptools request + response head", h1_heads(args.requests)),
    ]
    print("| framing, per request | µs of CPU |")
    print("|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e6:.1f} |")


if __name__ == "__main__":
    main()
