"""Errors of the `registry` package.

    RegistryError
    ├── InvalidInput        a request body or parameter breaks a rule (HTTP 400); names the field
    │   ├── InvalidResources  a batch of traffic resources is refused; `problems` lists them all
    │   └── InvalidNumber     a number or duration is NaN, infinite, out of range or not a number;
    │                         also a ValueError, so settings loaders report it as a bad setting
    ├── PayloadTooLarge     a request body is over the limit (HTTP 413)
    ├── NotFound            the named service, instance, check, key or lease does not exist (404)
    ├── Forbidden           the token may not do this (HTTP 403)
    ├── TooManyRequests     too soon after the last such request (HTTP 429, Retry-After)
    ├── Conflict            a compare-and-swap lost (HTTP 409)
    ├── InvalidSession      a lock call names a session that does not exist (500, as Consul)
    └── Unavailable         etcd cannot be reached or the server is shutting down (HTTP 503)

etcd errors (`registry.etcd.EtcdError`) are turned into these where they enter the catalog.
"""

from __future__ import annotations


class RegistryError(Exception):
    status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(RegistryError):
    status = 400


class InvalidResources(InvalidInput):
    """A batch of resources was refused as a whole; every problem names document and field."""

    def __init__(self, problems: list[str]) -> None:
        shown = problems[0] if len(problems) == 1 else f"{len(problems)} problems, first: "
        shown = shown if len(problems) == 1 else shown + problems[0]
        super().__init__(shown, field=problems[0].partition(": ")[2].partition(":")[0] or None)
        self.problems = problems


class InvalidNumber(InvalidInput, ValueError):
    pass


class PayloadTooLarge(RegistryError):
    status = 413


class NotFound(RegistryError):
    status = 404


class TooManyRequests(RegistryError):
    status = 429

    def __init__(self, message: str, *, retry_after: float, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after = retry_after


class Forbidden(RegistryError):
    status = 403


class Conflict(RegistryError):
    status = 409


class InvalidSession(RegistryError):
    status = 500


class Unavailable(RegistryError):
    status = 503
