"""The fake API server's state: objects, one resourceVersion counter, the event history.

Like the real API server (and etcd under it), every write bumps one cluster-wide
resourceVersion, watches replay history after the version a client holds, and a compaction
forgets history so an older version answers 410 Gone ("Expired").

Objects are stored per resource, and a resource is its group and plural, not its version
(the API server keeps one object whatever version it is read at), so Linkerd's HTTPRoute
(`httproutes.policy.linkerd.io`) and the Gateway API's (`httproutes.gateway.networking.k8s.io`)
are two resources that share a plural. Callers name a resource as kubectl does (`resolve`):
qualified by its group, or by its plural alone when only one served resource has it.
"""

from __future__ import annotations

import copy
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Resource:
    plural: str
    kind: str
    group: str  # "" for the core API
    version: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`leases.coordination.k8s.io`, as API server messages name a resource: what it is
        stored under (the same at every version)."""
        return qualified(self.plural, self.group)


def qualified(plural: str, group: str) -> str:
    return f"{plural}.{group}" if group else plural


def resolve(resources: Mapping[str, Resource], name: str) -> Resource:
    """The resource `name` names among `resources` (keyed by `qualified`), as kubectl reads a
    resource name: `httproutes.policy.linkerd.io`, or a plural (`pods`, `virtualservices`) that
    only one of them has. A plural two groups share names neither: the test must say which."""
    found = resources.get(name)
    if found is not None:
        return found
    same = sorted(key for key, r in resources.items() if r.plural == name)
    if len(same) == 1:
        return resources[same[0]]
    if not same:
        raise KeyError(f"no resource {name!r} is served (is its CRD installed?)")
    raise ValueError(
        f"{name!r} is the plural of {len(same)} resources: name one of {', '.join(same)}"
    )


RESOURCES = {
    r.qualified: r
    for r in (
        Resource("pods", "Pod", "", "v1"),
        Resource("services", "Service", "", "v1"),
        Resource("namespaces", "Namespace", "", "v1", namespaced=False),
        Resource("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1"),
        Resource("leases", "Lease", "coordination.k8s.io", "v1"),
    )
}


class ApiError(Exception):
    """An error the server answers with a `Status` object."""

    def __init__(self, code: int, reason: str, message: str, details: Obj | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self) -> Obj:
        return status_object(self.code, self.reason, self.message, self.details)


def status_object(code: int, reason: str, message: str, details: Obj | None = None) -> Obj:
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details:
        body["details"] = details
    return body


def gone(rv: int, oldest: int) -> ApiError:
    return ApiError(410, "Expired", f"too old resource version: {rv} ({oldest})")


@dataclass
class Event:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    resource: str  # Resource.qualified
    namespace: str
    name: str
    obj: Obj
    old: Obj | None


Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped objects


def parse_selector(text: str | None) -> list[tuple[str, str, str]]:
    """Equality-based label selectors: `a=b`, `a==b`, `a!=b`, `a`, `!a` (comma = and)."""
    terms: list[tuple[str, str, str]] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            k, v = part.split("!=", 1)
            terms.append(("!=", k.strip(), v.strip()))
        elif "==" in part or "=" in part:
            k, v = part.split("==", 1) if "==" in part else part.split("=", 1)
            terms.append(("=", k.strip(), v.strip()))
        elif part.startswith("!"):
            terms.append(("!", part[1:].strip(), ""))
        else:
            terms.append(("exists", part, ""))
    return terms


def selector_matches(terms: list[tuple[str, str, str]], labels: dict[str, str]) -> bool:
    for op, key, value in terms:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
    return True


def field_matches(terms: list[tuple[str, str, str]], obj: Obj) -> bool:
    meta = obj.get("metadata") or {}
    fields = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
    }
    return selector_matches(terms, fields)


class Store:
    """Objects of every resource, guarded by one condition variable watches wait on."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 1
        self.oldest = 0  # history holds every event with rv > oldest
        # Built-in kinds, plus the custom resources a test installs (`install`); both dicts
        # are keyed by Resource.qualified.
        self.resources: dict[str, Resource] = dict(RESOURCES)
        self.objects: dict[str, dict[Key, Obj]] = {name: {} for name in RESOURCES}
        self.history: list[Event] = []
        self._uids = itertools.count(1)

    def resource(self, name: str) -> Resource:
        """The served resource `name` names (see `resolve`)."""
        with self.cond:
            return resolve(self.resources, name)

    def install(self, resource: Resource) -> None:
        """Serve a custom resource from now on (a CustomResourceDefinition applied). Served
        at another version than before, its objects stay and read at the new one."""
        with self.cond:
            self.resources[resource.qualified] = resource
            for obj in self.objects.setdefault(resource.qualified, {}).values():
                obj["apiVersion"] = resource.api_version

    def served(self, group: str, version: str) -> list[Resource]:
        with self.cond:
            return [r for r in self.resources.values() if (r.group, r.version) == (group, version)]

    # -- reads (callers hold no lock; these take it) ------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj:
        with self.cond:
            res = self.resource(resource)
            obj = self.objects[res.qualified].get((namespace, name))
            if obj is None:
                raise not_found(res, name)
            return copy.deepcopy(obj)

    def list(
        self,
        resource: str,
        namespace: str | None,
        match: Callable[[Obj], bool] = lambda _: True,
    ) -> tuple[int, list[Obj]]:
        with self.cond:
            objects = self.objects[self.resource(resource).qualified]
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(objects.items())
                if (namespace is None or ns == namespace) and match(obj)
            ]
            return self.rv, items

    def events_after(self, rv: int, *, check: bool = True) -> list[Event]:
        """Events newer than `rv` (lock held by the caller).

        A new watch from before the last compaction gets 410 Gone (`check`); a watch already
        running keeps streaming across a compaction, as it does on a real API server.
        """
        if check and rv < self.oldest:
            raise gone(rv, self.oldest)
        # History is ordered by rv: bisect would do, but a scan from the end is short in tests.
        out: list[Event] = []
        for event in reversed(self.history):
            if event.rv <= rv:
                break
            out.append(event)
        out.reverse()
        return out

    # -- writes ------------------------------------------------------------------------------

    def _stamp(self, res: Resource, obj: Obj, old: Obj | None) -> Obj:
        obj = copy.deepcopy(obj)
        obj["kind"] = res.kind
        obj["apiVersion"] = res.api_version
        meta = obj.setdefault("metadata", {})
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        if old is None:
            meta["uid"] = str(uuid.UUID(int=next(self._uids)))
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            meta["generation"] = 1
        else:
            old_meta = old["metadata"]
            meta["uid"] = old_meta.get("uid")
            meta["creationTimestamp"] = old_meta.get("creationTimestamp")
            meta["generation"] = int(old_meta.get("generation", 1)) + 1
        return obj

    def _record(self, type_: str, res: Resource, key: Key, obj: Obj, old: Obj | None) -> None:
        self.history.append(Event(self.rv, type_, res.qualified, key[0], key[1], obj, old))
        self.cond.notify_all()

    def create(self, resource: str, namespace: str, obj: Obj) -> Obj:
        with self.cond:
            res = self.resource(resource)
            objects = self.objects[res.qualified]
            name = obj["metadata"]["name"]
            key = (namespace, name)
            if key in objects:
                raise ApiError(
                    409,
                    "AlreadyExists",
                    f'{res.qualified} "{name}" already exists',
                    details(res, name),
                )
            if res.namespaced:
                obj["metadata"]["namespace"] = namespace
            stored = self._stamp(res, obj, None)
            objects[key] = stored
            self._record("ADDED", res, key, stored, None)
            return copy.deepcopy(stored)

    def update(self, resource: str, namespace: str, obj: Obj) -> Obj:
        with self.cond:
            res = self.resource(resource)
            objects = self.objects[res.qualified]
            name = obj["metadata"]["name"]
            key = (namespace, name)
            old = objects.get(key)
            if old is None:
                raise not_found(res, name)
            wanted = obj["metadata"].get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {res.qualified} "{name}": '
                    "the object has been modified; please apply your changes to the latest "
                    "version and try again",
                    details(res, name),
                )
            if res.namespaced:
                obj["metadata"]["namespace"] = namespace
            stored = self._stamp(res, obj, old)
            objects[key] = stored
            self._record("MODIFIED", res, key, stored, old)
            return copy.deepcopy(stored)

    def delete(self, resource: str, namespace: str, name: str) -> Obj:
        with self.cond:
            res = self.resource(resource)
            key = (namespace, name)
            old = self.objects[res.qualified].pop(key, None)
            if old is None:
                raise not_found(res, name)
            self.rv += 1
            gone_obj = copy.deepcopy(old)
            gone_obj["metadata"]["resourceVersion"] = str(self.rv)
            self._record("DELETED", res, key, gone_obj, old)
            return copy.deepcopy(gone_obj)

    def put_raw(self, resource: str, namespace: str, obj: Obj) -> Obj:
        """Store `obj` as given (only metadata stamped): how tests plant malformed objects."""
        with self.cond:
            res = self.resource(resource)
            objects = self.objects[res.qualified]
            name = (obj.get("metadata") or {}).get("name", f"raw-{self.rv + 1}")
            obj.setdefault("metadata", {})["name"] = name
            key = (namespace, name)
            old = objects.get(key)
            self.rv += 1
            stored = copy.deepcopy(obj)
            stored["metadata"]["resourceVersion"] = str(self.rv)
            objects[key] = stored
            self._record("ADDED" if old is None else "MODIFIED", res, key, stored, old)
            return copy.deepcopy(stored)

    def compact(self) -> int:
        """Forget history up to now: a watch or a list continued from before gets 410 Gone.

        Events stay in memory for the watches already streaming them.
        """
        with self.cond:
            self.oldest = self.rv
            return self.rv

    def iter_objects(self, resource: str) -> Iterator[Obj]:
        with self.cond:
            objects = self.objects[self.resource(resource).qualified]
            items = [copy.deepcopy(o) for o in objects.values()]
        yield from items


def not_found(resource: Resource, name: str) -> ApiError:
    return ApiError(
        404,
        "NotFound",
        f'{resource.qualified} "{name}" not found',
        details(resource, name),
    )


def details(resource: Resource, name: str) -> Obj:
    """A Status's `details` for one object: its group is said unless it is the core API's."""
    out: Obj = {"name": name, "kind": resource.plural}
    if resource.group:
        out["group"] = resource.group
    return out
