"""A small, fast HTTP/1.1 server on trio + httptools, for Weft's control-plane APIs.

Used by `weft server` (registry, Consul-compatible API, CA), the agent's local API and the
Kubernetes adapter's probes. The cores are pure: `RequestParser` (bytes in, requests out),
`Inbox` (bounded read-ahead and the client's clocks), `Admission` (connection caps); the trio
layer only moves bytes, and nothing a client does escapes a connection (docs/security.md).
"""

from ._parser import ParsedRequest as ParsedRequest
from ._parser import ProtocolError as ProtocolError
from ._parser import RequestParser as RequestParser
from ._routing import HTTPError as HTTPError
from ._routing import Request as Request
from ._routing import Response as Response
from ._routing import Router as Router
from ._server import HTTPServer as HTTPServer
from ._server import Limits as Limits
from ._server import connection_settings_problem as connection_settings_problem
