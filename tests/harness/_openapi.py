"""Check one real answer against the server's own OpenAPI document (what schemathesis checks,
for one request a test chose on purpose)."""

from __future__ import annotations

from typing import Any

import httpx
from jsonschema import Draft202012Validator


def assert_documented(doc: dict[str, Any], method: str, path: str, resp: httpx.Response) -> None:
    """The status is declared for the operation, its headers are there and its body matches."""
    operation = doc["paths"][path][method.lower()]
    declared = operation["responses"].get(str(resp.status_code))
    assert declared is not None, (
        f"{method} {path} answered {resp.status_code}, which the document does not declare "
        f"({sorted(operation['responses'])}): {resp.text[:300]}"
    )
    for name in declared.get("headers", {}):
        assert name in resp.headers, f"{method} {path} {resp.status_code}: no {name} header"
    content = declared.get("content", {})
    if not content:
        return
    media = resp.headers.get("content-type", "").split(";")[0].strip()
    assert media in content, f"{method} {path}: answered {media!r}, declared {sorted(content)}"
    if media != "application/json":
        return
    # The document's `#/components/...` references resolve against the schema's own root.
    schema = {**content[media]["schema"], "components": doc["components"]}
    errors = sorted(Draft202012Validator(schema).iter_errors(resp.json()), key=str)
    assert not errors, f"{method} {path} {resp.status_code}: {errors[0].message}: {resp.text[:300]}"
