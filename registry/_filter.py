"""Consul's `?filter=` expressions (the go-bexpr language), parsed once and run on the
JSON a view renders: a record is kept when the expression holds for it.

    Service.Tags contains "v2" and Service.Meta.env == prod
    "primary" in ServiceTags or not (Checks.Status == passing)
    Node.Meta["rack id"] is not empty
    ServiceName matches "^api-"

Selectors are field paths of the rendered record (`.name` or `["name"]`, names matched
without regard to case, as Consul does); a selector that crosses a list (`Checks.Status`)
holds when it holds for any element. Values are "quoted", `raw`, or bare words and numbers;
they are compared as the field's type (numbers numerically, booleans as true/false).
A bad expression or an unknown top-level field is `FilterError`, which answers 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidInput

MAX_EXPRESSION = 4096
MAX_PATTERN = 256
MAX_DEPTH = 32  # parentheses and `not`s: the parser recurses, and so do the predicates
# A group holding a quantifier and quantified itself, like (a+)+ or (x*)*: the shape of
# regular expressions that backtrack exponentially (Python's re has no time limit).
_NESTED_QUANTIFIER = re.compile(r"\([^)]*[+*}][^)]*\)\s*[+*{]")


class FilterError(InvalidInput):
    def __init__(self, message: str) -> None:
        super().__init__(f"filter: {message}", field="filter")


Predicate = Callable[[Any], bool]

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>"(?:[^"\\]|\\.)*")
      | (?P<raw>`[^`]*`)
      | (?P<op>==|!=|\(|\)|\[|\]|\.)
      | (?P<word>[^\s"`()\[\].=!]+)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"and", "or", "not", "in", "is", "empty", "contains", "matches"}


@dataclass(frozen=True)
class _Tok:
    kind: str  # str (any quoted or bare value), op, word
    text: str
    quoted: bool = False


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"unexpected {text[pos:].strip()[:20]!r} at offset {pos}")
        pos = match.end()
        if match.group("str") is not None:
            body = match.group("str")[1:-1]
            out.append(_Tok("str", re.sub(r"\\(.)", r"\1", body), quoted=True))
        elif match.group("raw") is not None:
            out.append(_Tok("str", match.group("raw")[1:-1], quoted=True))
        elif match.group("op") is not None:
            out.append(_Tok("op", match.group("op")))
        else:
            out.append(_Tok("word", match.group("word")))
    return out


class _Parser:
    def __init__(self, tokens: list[_Tok], fields: frozenset[str] | None) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0
        self.fields = {f.lower() for f in fields} if fields is not None else None

    def peek(self, offset: int = 0) -> _Tok | None:
        at = self.pos + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def is_word(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok.kind == "word" and tok.text.lower() == word

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise FilterError("the expression ends too early")
        self.pos += 1
        return tok

    def expect_op(self, op: str) -> None:
        if self.peek() is None:
            raise FilterError(f"expected {op!r} before the end of the expression")
        tok = self.take()
        if tok.kind != "op" or tok.text != op:
            raise FilterError(f"expected {op!r}, got {tok.text!r}")

    # expression := term ("or" term)* ; term := factor ("and" factor)*
    def expression(self) -> Predicate:
        left = self.term()
        while self.is_word("or"):
            self.pos += 1
            right = self.term()
            left = (lambda a, b: lambda r: a(r) or b(r))(left, right)
        return left

    def term(self) -> Predicate:
        left = self.factor()
        while self.is_word("and"):
            self.pos += 1
            right = self.factor()
            left = (lambda a, b: lambda r: a(r) and b(r))(left, right)
        return left

    def factor(self) -> Predicate:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise FilterError(f"nested deeper than {MAX_DEPTH} levels")
            return self._factor()
        finally:
            self.depth -= 1

    def _factor(self) -> Predicate:
        if self.is_word("not") and not self.is_word("in", 1):
            self.pos += 1
            inner = self.factor()
            return lambda r: not inner(r)
        tok = self.peek()
        if tok is not None and tok.kind == "op" and tok.text == "(":
            self.pos += 1
            inner = self.expression()
            self.expect_op(")")
            return inner
        return self.match()

    def match(self) -> Predicate:
        # `"value" in Selector` / `"value" not in Selector`
        if self.is_word("in", 1) or (self.is_word("not", 1) and self.is_word("in", 2)):
            value = self.value()
            negate = self.is_word("not")
            self.pos += 2 if negate else 1
            path = self.selector()
            return _negated(
                lambda r: _any(_resolve(r, path), lambda f: _contains(f, value)), negate
            )
        path = self.selector()
        tok = self.take()
        if tok.kind == "op" and tok.text in ("==", "!="):
            value = self.value()
            equal = lambda r: _any(_resolve(r, path), lambda f: _equals(f, value))  # noqa: E731
            return equal if tok.text == "==" else (lambda r: not equal(r))
        word = tok.text.lower() if tok.kind == "word" else ""
        negate = False
        if word == "not":
            negate, word = True, self.take().text.lower()
        if word == "is":
            if self.is_word("not"):
                self.pos += 1
                negate = True
            if not self.is_word("empty"):
                raise FilterError("expected 'empty' after 'is'")
            self.pos += 1
            return _negated(lambda r: all(_empty(f) for f in _resolve(r, path)), negate)
        if word == "contains":
            value = self.value()
            return _negated(
                lambda r: _any(_resolve(r, path), lambda f: _contains(f, value)), negate
            )
        if word == "matches":
            pattern = self.value()
            if len(pattern) > MAX_PATTERN or _NESTED_QUANTIFIER.search(pattern):
                raise FilterError(
                    f"regular expression {pattern[:40]!r} is refused: at most {MAX_PATTERN} "
                    "characters and no quantified group that holds a quantifier, like (a+)+"
                )
            try:
                regex = re.compile(pattern)
            except re.error as exc:
                raise FilterError(f"bad regular expression {pattern!r}: {exc}") from None
            return _negated(
                lambda r: _any(
                    _resolve(r, path), lambda f: isinstance(f, str) and bool(regex.search(f))
                ),
                negate,
            )
        raise FilterError(
            f"expected ==, !=, is [not] empty, [not] contains, [not] matches after the "
            f"selector, got {tok.text!r}"
        )

    def selector(self) -> tuple[str, ...]:
        tok = self.take()
        if tok.kind != "word" or tok.text.lower() in _KEYWORDS:
            raise FilterError(f"expected a selector (a field name), got {tok.text!r}")
        path = [tok.text]
        while True:
            nxt = self.peek()
            if nxt is not None and nxt.kind == "op" and nxt.text == ".":
                self.pos += 1
                part = self.take()
                if part.kind not in ("word", "str"):
                    raise FilterError(f"expected a field name after '.', got {part.text!r}")
                path.append(part.text)
            elif nxt is not None and nxt.kind == "op" and nxt.text == "[":
                self.pos += 1
                part = self.take()
                if part.kind != "str":
                    raise FilterError('expected a quoted key in [...], like Meta["env"]')
                path.append(part.text)
                self.expect_op("]")
            else:
                break
        if self.fields is not None and path[0].lower() not in self.fields:
            raise FilterError(f"selector {'.'.join(path)!r} is not valid: no field {path[0]!r}")
        return tuple(path)

    def value(self) -> str:
        tok = self.take()
        if tok.kind == "str" or (tok.kind == "word" and tok.text.lower() not in _KEYWORDS):
            return tok.text
        raise FilterError(f"expected a value, got {tok.text!r}")


def _negated(predicate: Predicate, negate: bool) -> Predicate:
    return (lambda r: not predicate(r)) if negate else predicate


def _field(record: Mapping[str, Any], name: str) -> tuple[bool, Any]:
    if name in record:
        return True, record[name]
    lowered = name.lower()
    for key, value in record.items():
        if key.lower() == lowered:
            return True, value
    return False, None


def _resolve(record: Any, path: tuple[str, ...]) -> list[Any]:
    """Every value the path reaches (lists crossed element by element); a missing map key
    reaches nothing."""
    current = [record]
    for name in path:
        nxt = []
        for value in current:
            targets = value if isinstance(value, list) else [value]
            for target in targets:
                if isinstance(target, Mapping):
                    found, got = _field(target, name)
                    if found:
                        nxt.append(got)
        current = nxt
    return current


def _any(values: Iterable[Any], test: Callable[[Any], bool]) -> bool:
    return any(test(v) for v in values)


def _equals(field: Any, value: str) -> bool:
    if isinstance(field, bool):
        return value.lower() == ("true" if field else "false")
    if isinstance(field, int | float):
        try:
            return float(value) == float(field)
        except ValueError:
            return False
    if field is None:
        return value == ""
    if isinstance(field, str):
        return field == value
    return False


def _contains(field: Any, value: str) -> bool:
    if isinstance(field, list):
        return any(_equals(item, value) for item in field)
    if isinstance(field, Mapping):
        return value in field
    if isinstance(field, str):
        return value in field
    return False


def _empty(field: Any) -> bool:
    return field is None or (isinstance(field, str | list | Mapping) and len(field) == 0)


def parse(text: str, fields: Iterable[str] | None = None) -> Predicate:
    """A predicate for one rendered record; `fields` are the record's top-level names."""
    if len(text) > MAX_EXPRESSION:
        raise FilterError(f"at most {MAX_EXPRESSION} characters")
    tokens = _tokens(text)
    if not tokens:
        raise FilterError("the expression is empty")
    parser = _Parser(tokens, frozenset(fields) if fields is not None else None)
    predicate = parser.expression()
    if parser.peek() is not None:
        raise FilterError(f"unexpected {parser.peek().text!r} after the expression")  # type: ignore[union-attr]
    return predicate


def apply(records: list[Any], text: str | None, fields: Iterable[str]) -> list[Any]:
    if text is None:
        return records
    predicate = parse(text, fields)
    return [r for r in records if predicate(r)]


def apply_map(records: dict[str, Any], text: str | None, fields: Iterable[str]) -> dict[str, Any]:
    """For endpoints that answer a map (agent services, agent checks): filter its values."""
    if text is None:
        return records
    predicate = parse(text, fields)
    return {k: v for k, v in records.items() if predicate(v)}
