"""Health checks run on the host: HTTP, TCP, exec on their intervals; TTL checks kept here.

Each check's status follows the registry's status table (thresholds included); only changes
are pushed to the registry. A push that fails (server away) is retried until it lands, so the
registry ends up with the host's view as soon as it is reachable again.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import httpx
import trio

from registry.checks import (
    Check,
    Status,
    Streak,
    next_status,
    probe_exec,
    probe_http,
    probe_tcp,
)

from ._definitions import CheckDef

log = logging.getLogger("weft.agent.checks")

Push = Callable[[str, Status, str], Awaitable[None]]


@dataclass
class CheckState:
    definition: CheckDef
    status: Status
    output: str = ""
    streak: Streak = field(default_factory=Streak)
    expires_at: float = 0.0  # TTL checks (trio clock)
    reported: Status | None = None  # what the registry has, as far as we know
    reported_output: str = ""

    def as_check(self) -> Check:
        spec = self.definition.spec
        return Check(
            id=self.definition.id,
            node="",
            service="",
            instance="",
            type=self.definition.kind,
            status=self.status,
            success_before_passing=int(spec.get("success_before_passing", 0)),
            failures_before_warning=int(spec.get("failures_before_warning", 0)),
            failures_before_critical=int(spec.get("failures_before_critical", 0)),
        )


class CheckRunner:
    def __init__(self, push: Push) -> None:
        self.push = push
        self.checks: dict[str, CheckState] = {}
        self._tasks: dict[str, trio.CancelScope] = {}
        self._changed = trio.Event()
        self._nursery: trio.Nursery | None = None

    def set_checks(self, defs: list[CheckDef]) -> None:
        """Adopt a new set of checks; unchanged ones keep their state."""
        wanted = {d.id: d for d in defs}
        for check_id in list(self.checks):
            if check_id not in wanted or wanted[check_id] != self.checks[check_id].definition:
                scope = self._tasks.pop(check_id, None)
                if scope is not None:
                    scope.cancel()
                del self.checks[check_id]
        for check_id, definition in wanted.items():
            if check_id in self.checks:
                continue
            initial = Status(definition.spec.get("status", "critical"))
            state = CheckState(definition, initial)
            if definition.kind == "ttl" and initial is not Status.CRITICAL:
                state.expires_at = trio.current_time() + float(definition.spec["ttl"])
            self.checks[check_id] = state
            if self._nursery is not None:
                self._start(state)
        self._changed.set()

    def server_view(self, check_id: str, status: Status, output: str) -> None:
        """What the registry says a check is (from a registration answer)."""
        state = self.checks.get(check_id)
        if state is not None:
            state.reported = status
            state.reported_output = output
            self._changed.set()

    def forget_reports(self) -> None:
        """The registry may have lost our checks (new lease): push everything again."""
        for state in self.checks.values():
            state.reported = None
        self._changed.set()

    def ttl_update(self, check_id: str, status: Status, output: str) -> CheckState:
        state = self.checks.get(check_id)
        if state is None:
            raise KeyError(check_id)
        if state.definition.kind != "ttl":
            raise ValueError(f"check {check_id!r} is a {state.definition.kind} check, not TTL")
        state.status, state.output = status, output
        state.expires_at = trio.current_time() + float(state.definition.spec["ttl"])
        self._changed.set()
        return state

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for state in self.checks.values():
                self._start(state)
            nursery.start_soon(self._report_loop)

    def _start(self, state: CheckState) -> None:
        assert self._nursery is not None
        if state.definition.kind == "ttl":
            return
        scope = trio.CancelScope()
        self._tasks[state.definition.id] = scope
        self._nursery.start_soon(self._probe_loop, state, scope)

    async def _probe_loop(self, state: CheckState, scope: trio.CancelScope) -> None:
        definition = state.definition
        with scope:
            async with httpx.AsyncClient() as http:
                while True:
                    result, output = await self._probe_once(definition, http)
                    status, state.streak = next_status(state.as_check(), result, state.streak)
                    if status is not state.status:
                        log.info(
                            "check %s is now %s",
                            definition.id,
                            status,
                            extra={"kv": {"output": output[:200]}},
                        )
                        self._changed.set()
                    state.status, state.output = status, output
                    await trio.sleep(_safe_interval(definition.interval))

    @staticmethod
    async def _probe_once(definition: CheckDef, http: httpx.AsyncClient) -> tuple[Status, str]:
        # The probes never raise; this guard is for the definition itself (a spec that slipped
        # past validation): one broken check turns critical, the agent and its other checks go on.
        spec = definition.spec
        try:
            if definition.kind == "http":
                return await probe_http(
                    http,
                    spec["http"],
                    method=spec.get("method", "GET"),
                    headers=spec.get("header"),
                    timeout=definition.timeout,
                    tls_skip_verify=bool(spec.get("tls_skip_verify", False)),
                )
            if definition.kind == "tcp":
                return await probe_tcp(spec["tcp"], timeout=definition.timeout)
            return await probe_exec(spec["args"], timeout=definition.timeout)
        except Exception as exc:
            log.warning("check %s could not run: %s", definition.id, exc)
            return Status.CRITICAL, f"check could not run: {type(exc).__name__}: {exc}"

    async def _report_loop(self) -> None:
        while True:
            with trio.move_on_after(0.5):
                await self._changed.wait()
            self._changed = trio.Event()
            now = trio.current_time()
            for state in list(self.checks.values()):
                if (
                    state.definition.kind == "ttl"
                    and state.status is not Status.CRITICAL
                    and state.expires_at
                    and now > state.expires_at
                ):
                    state.status, state.output = Status.CRITICAL, "TTL expired"
                if state.status is state.reported:
                    continue
                try:
                    await self.push(state.definition.id, state.status, state.output)
                except Exception as exc:  # retried on the next round
                    log.debug("could not report check %s yet: %s", state.definition.id, exc)
                    continue
                state.reported, state.reported_output = state.status, state.output

    def snapshot(self) -> dict[str, dict[str, str]]:
        return {
            cid: {"status": str(s.status), "output": s.output, "kind": s.definition.kind}
            for cid, s in self.checks.items()
        }


def _safe_interval(value: float) -> float:
    return value if math.isfinite(value) and value > 0 else 60.0


def with_status(definition: CheckDef, status: Status) -> CheckDef:
    return replace(definition, spec={**definition.spec, "status": str(status)})
