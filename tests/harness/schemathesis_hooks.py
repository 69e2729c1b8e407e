"""Hooks the schemathesis CLI loads (SCHEMATHESIS_HOOKS) when it fuzzes a real `weft server`.

The run holds the cluster's only operator token. It may call every operation, token
revocation included, but it may not mint another operator token: with one, revoking the
bootstrap token would be allowed (it is not the last), and the secret of the token left would
exist only in the fuzzer's memory. Kept to one operator, every revoke of it the fuzzer tries
must be refused, which is what the test checks afterwards.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.method.upper() != "POST" or case.path != "/v1/tokens":
        return
    body = case.body
    if isinstance(body, dict) and str(body.get("role", "")).strip().lower() == "operator":
        case.body = {**body, "role": "read"}
