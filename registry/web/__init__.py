"""A small, fast HTTP/1.1 server on trio + httptools, for Weft's control-plane APIs.

Used by `weft server` (registry, Consul-compatible API, CA) and the agent's local API. The
parser core (`RequestParser`) is pure; `serve_http` only moves bytes.
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
