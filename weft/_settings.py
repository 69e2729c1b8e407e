"""Typed configuration for every Weft daemon: file, then environment, then flags (later wins).

A component declares its settings as a frozen dataclass whose fields carry `setting(...)`
metadata. `load_settings` reads a TOML file, `WEFT_<COMPONENT>_<FIELD>` environment variables
and command-line flags, converts every value to the field's type and runs the dataclass's
`validate()`; any problem raises `SettingsError` naming the field and where the value came from.
The CLI turns that into exit status 64 (EX_USAGE) before any port is bound.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

EX_USAGE = 64

T = TypeVar("T")


class SettingsError(ValueError):
    """A configuration value is missing, malformed or out of range."""

    def __init__(self, field: str, message: str, origin: str = "") -> None:
        where = f" (from {origin})" if origin else ""
        super().__init__(f"{field}{where}: {message}")
        self.field = field
        self.origin = origin


def setting(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    parse: Callable[[str], Any] | None = None,
    flag: bool = True,
    secret: bool = False,
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A dataclass field that is also a setting with `help` text (shown by `--help`)."""
    metadata = {"help": help, "parse": parse, "flag": flag, "secret": secret}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# One duration syntax everywhere (Go's, as Consul and the registry take it).
from registry.validation import parse_duration as parse_duration  # noqa: E402
from registry.validation import parse_number  # noqa: E402

MAX_WORKERS = 256  # processes per proxy: more than any host's cores Weft has been run on


def parse_workers(text: str | int) -> int:
    """A process count: a whole number, or `auto` for one per core this process may run on
    (at most MAX_WORKERS: a larger host gets MAX_WORKERS rather than a refusal)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    lowered = str(text).strip().lower()
    if lowered == "auto":
        import os

        return min(len(os.sched_getaffinity(0)) or 1, MAX_WORKERS)
    if not lowered.isdigit():
        raise ValueError(f"{text!r} is not a number of processes (a whole number, or auto)")
    return int(lowered)


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def _convert(value: Any, annotation: Any, parse: Callable[[str], Any] | None) -> Any:
    if parse is not None:
        return parse(value)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (types.UnionType, typing.Union):
        if (value is None or value == "") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], None)
    if annotation is bool:
        return parse_bool(value)
    if annotation in (int, float):
        # The registry's one number parser: no NaN, inf, 1e999, booleans or '١٢'. Ranges are
        # each setting's own `validate`; surrounding spaces (an env file's) are forgiven.
        text = value.strip() if isinstance(value, str) else value
        return parse_number(text, integer=annotation is int, minimum=None)
    if annotation is str:
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a string")
        return value
    if annotation is Path:
        return Path(value)
    if origin in (tuple, list):
        items = value.split(",") if isinstance(value, str) else list(value)
        items = [i.strip() if isinstance(i, str) else i for i in items]
        items = [i for i in items if i != ""]
        converted = [_convert(i, args[0], None) for i in items]
        return tuple(converted) if origin is tuple else converted
    return value


def _fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def add_arguments(parser: argparse.ArgumentParser, cls: type, env_prefix: str) -> None:
    """Add one `--flag` per setting of `cls`, with its help, default and environment name."""
    hints = typing.get_type_hints(cls)
    for f in _fields(cls):
        if not f.metadata.get("flag", True):
            continue
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        if f.metadata.get("secret") or default in (None, "", ()):
            shown = ""
        else:
            text_default = ",".join(map(str, default)) if isinstance(default, tuple) else default
            shown = f" [default: {text_default}]"
        env_name = env_prefix + f.name.upper()
        text = f"{f.metadata['help']}{shown} (env {env_name})"
        if hints[f.name] is bool:
            parser.add_argument(
                flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=text
            )
        else:
            parser.add_argument(flag, dest=f.name, default=None, metavar="VALUE", help=text)


def load_settings(
    cls: type[T],
    *,
    env_prefix: str,
    file: str | Path | None = None,
    flags: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    file_section: str | None = None,
) -> T:
    """Build `cls` from a TOML file, then the environment, then flags; validate it."""
    environ = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in _fields(cls)}
    values: dict[str, Any] = {}

    if file is not None:
        try:
            data = tomllib.loads(Path(file).read_text())
        except FileNotFoundError:
            raise SettingsError("config", f"file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError("config", f"{file} is not valid TOML: {exc}") from None
        if file_section:
            data = data.get(file_section, {})
        for key, raw in data.items():
            name = key.replace("-", "_")
            if name not in known:
                raise SettingsError(
                    key, f"unknown setting in {file}; known: {', '.join(sorted(known))}"
                )
            values[name] = (raw, f"{file}")

    for name in known:
        env_name = env_prefix + name.upper()
        if env_name in environ:
            values[name] = (environ[env_name], env_name)

    for name, raw in (flags or {}).items():
        if name in known and raw is not None:
            values[name] = (raw, "--" + name.replace("_", "-"))

    converted: dict[str, Any] = {}
    for name, (raw, origin) in values.items():
        try:
            converted[name] = _convert(raw, hints[name], known[name].metadata.get("parse"))
        except (ValueError, TypeError) as exc:
            raise SettingsError(name, str(exc), origin) from None
    try:
        settings = cls(**converted)
    except TypeError as exc:
        missing = [
            f.name
            for f in _fields(cls)
            if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
            and f.name not in converted
        ]
        if missing:
            raise SettingsError(missing[0], "is required") from None
        raise SettingsError("settings", str(exc)) from None
    validate = getattr(settings, "validate", None)
    if validate is not None:
        try:
            validate()
        except ValueError as exc:
            # Components raise their own ValueError subclass carrying `field`.
            name = getattr(exc, "field", "settings")
            origin = values.get(name, (None, "default"))[1]
            message = str(exc)
            if message.startswith(f"{name}: "):
                message = message[len(name) + 2 :]
            raise SettingsError(name, message, origin) from None
    return settings
