"""Readability waits without re-arming: one epoll of the proxy's own for its sockets.

trio's `wait_readable` registers the socket with EPOLLONESHOT, so every wait costs an
`epoll_ctl` system call and the IO manager's bookkeeping. A `Reactor` keeps a socket
registered (level-triggered) while its owner keeps coming back to wait on it; one trio task
waits for the reactor's epoll descriptor to become readable and wakes the tasks whose sockets
have data. In the request/response rhythm of a proxied connection a wait then costs no system
call at all.

Level-triggered, so nothing is ever missed: a wait always has its socket registered, and a
registered socket with unread bytes (a second TLS record still in the kernel, bytes that came
while nobody waited) is reported at once. A socket that stays readable with nobody waiting on
it (its owner is busy elsewhere, or the peer hung up on an idle pooled connection) would be
reported round after round, so it is unregistered after one round of grace (the round in which
its owner was just woken and may not have run yet), and registered again by the next wait.

`wait_readable(sock)` keeps trio's contract: it is a cancellation point (the abort removes the
waiter), a second waiter on one socket gets `BusyResourceError`, and `notify_closing(sock)`
wakes the waiter with `ClosedResourceError`.
"""

from __future__ import annotations

import select
import socket
from typing import Any

import outcome
import trio
from trio.lowlevel import Abort, Task, current_task, reschedule, wait_task_rescheduled

_READ = select.EPOLLIN | select.EPOLLRDHUP


class Reactor:
    __slots__ = ("_epoll", "_registered", "_round", "_waiters", "_woken", "rounds")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._registered: dict[int, Any] = {}  # fd -> the socket registered under it
        self._waiters: dict[int, Task] = {}
        self._woken: dict[int, int] = {}  # fd -> the round its waiter was last woken in
        self._round = 0
        self.rounds = 0  # dispatch rounds so far (for tests and diagnostics)

    async def run(self) -> None:
        """Wake the waiters of the sockets that became readable (run in the nursery)."""
        epoll = self._epoll
        waiters = self._waiters
        woken = self._woken
        fileno = epoll.fileno()
        try:
            while True:
                await trio.lowlevel.wait_readable(fileno)
                self._round = now = self._round + 1
                self.rounds += 1
                for fd, _ in epoll.poll(0):
                    task = waiters.pop(fd, None)
                    if task is not None:
                        woken[fd] = now
                        reschedule(task)
                    elif woken.get(fd, 0) < now - 1:
                        self._forget(fd)  # readable with nobody waiting: until the next wait
        finally:
            for task in waiters.values():
                reschedule(task, outcome.Error(trio.ClosedResourceError("the reactor stopped")))
            waiters.clear()
            epoll.close()

    async def wait_readable(self, sock: socket.socket) -> None:
        fd = sock.fileno()
        if fd < 0:
            raise trio.ClosedResourceError("socket was closed")
        if self._registered.get(fd) is not sock:
            # Not registered, or a new socket under a reused descriptor (the old registration
            # went away with the old socket).
            try:
                self._epoll.register(fd, _READ)
            except FileExistsError:
                self._epoll.modify(fd, _READ)
            self._registered[fd] = sock
        if fd in self._waiters:
            raise trio.BusyResourceError("another task is already waiting to read this socket")
        waiters = self._waiters
        waiters[fd] = current_task()

        def abort(_: Any) -> Abort:
            waiters.pop(fd, None)
            return Abort.SUCCEEDED

        await wait_task_rescheduled(abort)

    def notify_closing(self, sock: socket.socket) -> None:
        """The socket is about to close: wake its waiter with ClosedResourceError, forget it."""
        fd = sock.fileno()
        if fd < 0 or self._registered.get(fd) is not sock:
            return
        self._forget(fd)
        task = self._waiters.pop(fd, None)
        if task is not None:
            reschedule(task, outcome.Error(trio.ClosedResourceError("this socket was closed")))

    def _forget(self, fd: int) -> None:
        self._registered.pop(fd, None)
        self._woken.pop(fd, None)
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # already gone with its socket
