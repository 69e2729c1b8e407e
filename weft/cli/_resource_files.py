"""Reading resource files for `weft apply`, `weft diff` and `weft delete -f`.

A file holds one or more documents: YAML (`---` between them) or JSON (one object, or a list
of them); a directory means its `*.yaml`, `*.yml` and `*.json` files in name order; `-` is
standard input. Each document remembers where it came from, so a problem names the file and
the document's position in it as well as the field.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._output import CommandError

EX_DATAERR = 65
SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Origin:
    file: str
    document: int  # 1-based position in its file

    def __str__(self) -> str:
        return f"{self.file}, document {self.document}"


def _key_problems(value: Any, path: str) -> list[str]:
    """YAML 1.1 reads some bare keys (on, off, yes, no) as booleans: say so, by field."""
    out = []
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                out.append(
                    f"{path}{key!r}: a field name must be a string (YAML 1.1 reads bare "
                    "on, off, yes and no as booleans: quote the name, or for retries use retryOn)"
                )
                continue
            out.extend(_key_problems(item, f"{path}{key}."))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_key_problems(item, f"{path[:-1]}[{i}]."))
    return out


def _parse(text: str, name: str) -> list[Any]:
    stripped = text.lstrip()
    try:
        if name.endswith(".json") or stripped.startswith(("{", "[")):
            data = json.loads(text)
            docs = data if isinstance(data, list) else [data]
        else:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise CommandError(f"{name}: not valid YAML or JSON: {exc}", EX_DATAERR) from None
    for i, doc in enumerate(docs):
        problems = _key_problems(doc, "")
        if problems:
            raise CommandError(f"{name}, document {i + 1}: {problems[0]}", EX_DATAERR)
    return docs


def load(paths: list[str]) -> tuple[list[Any], list[Origin]]:
    docs: list[Any] = []
    origins: list[Origin] = []
    for given in paths:
        if given == "-":
            sources = [("(stdin)", sys.stdin.read())]
        else:
            path = Path(given)
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file())
                if not files:
                    raise CommandError(f"{given}: no .yaml, .yml or .json files in it", EX_DATAERR)
            else:
                files = [path]
            sources = []
            for file in files:
                try:
                    sources.append((str(file), file.read_text()))
                except OSError as exc:
                    raise CommandError(f"cannot read {file}: {exc.strerror}", 66) from None
        for name, text in sources:
            for n, doc in enumerate(_parse(text, name), start=1):
                docs.append(doc)
                origins.append(Origin(name, n))
    if not docs:
        raise CommandError("no resources in the given files", EX_DATAERR)
    return docs, origins


def locate(problem: str, origins: list[Origin]) -> str:
    """'resources[3] (Route x): spec...' -> 'routes.yaml, document 2 (Route x): spec...'."""
    if problem.startswith("resources["):
        index_text, _, rest = problem[len("resources[") :].partition("]")
        if index_text.isdigit() and int(index_text) < len(origins):
            return f"{origins[int(index_text)]}{rest}"
    return problem


def check_locally(docs: list[Any], origins: list[Origin]) -> None:
    """The server's own rules, before anything is sent: every problem, by file and field."""
    from registry.resources import validate_all

    _, problems = validate_all(docs)
    if problems:
        raise CommandError(
            "refused, nothing was stored:\n  " + "\n  ".join(locate(p, origins) for p in problems),
            EX_DATAERR,
        )


def load_importing(paths: list[str], strict: bool = False) -> tuple[list[Any], list[Origin]]:
    """`load`, with other meshes' documents (ServiceProfile, VirtualService, DestinationRule,
    HTTPRoute, TrafficSplit) turned into Weft's. Warnings and notes go to standard error;
    a document that cannot be imported, or with `strict` any warning, refuses the whole set."""
    from registry.importers import convert

    docs, origins = load(paths)
    imported = convert(docs)
    for line in imported.notes:
        print(f"note: {line}", file=sys.stderr)
    refusals = list(imported.problems)
    if strict:
        refusals += [f"{w} (--strict)" for w in imported.warnings]
    else:
        for line in imported.warnings:
            print(f"warning: {line}", file=sys.stderr)
    if refusals:
        raise CommandError("refused, nothing was stored:\n  " + "\n  ".join(refusals), EX_DATAERR)
    if not imported.docs:
        raise CommandError("the given documents import as no resources", EX_DATAERR)
    return imported.docs, [origins[i] for i in imported.sources]


def add_strict_flag(parser: Any) -> None:
    parser.add_argument(
        "--strict",
        action="store_true",
        help="refuse other meshes' documents with any field Weft cannot honour (else: warnings)",
    )
