"""A TCP relay a test can cut: real sockets, for breaking a stream on purpose."""

from __future__ import annotations

import trio


class Relay:
    """Forwards 127.0.0.1:<port> to `target`; `cut()` drops every open connection."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._scopes: set[trio.CancelScope] = set()
        self.connections = 0
        self.paused = False

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, client: trio.SocketStream) -> None:
        if self.paused:  # as if the far side were down: accept, then hang up
            await client.aclose()
            return
        self.connections += 1
        with trio.CancelScope() as scope:
            self._scopes.add(scope)
            try:
                upstream = await trio.open_tcp_stream(*self.target)
                async with client, upstream, trio.open_nursery() as nursery:
                    nursery.start_soon(_pump, client, upstream)
                    nursery.start_soon(_pump, upstream, client)
            except (OSError, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            finally:
                self._scopes.discard(scope)

    def pause(self) -> int:
        """Cut every connection and refuse new ones until `resume()`."""
        self.paused = True
        return self.cut()

    def resume(self) -> None:
        self.paused = False

    def cut(self) -> int:
        """Drop every open connection; returns how many were cut."""
        scopes = list(self._scopes)
        for scope in scopes:
            scope.cancel()
        return len(scopes)


async def _pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
    try:
        while data := await src.receive_some(65536):
            await dst.send_all(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    finally:
        with trio.CancelScope(shield=True):
            await dst.aclose()
