"""Weft's sidecar proxy: mTLS between services, HTTP/1.1 balancing, opaque TCP, golden metrics.

Configured entirely by a versioned JSON snapshot (docs/snapshot.md, `snapshot.schema.json`);
run with `weft proxy --snapshot FILE`. Imports nothing of Weft but `ca`'s identity helpers.
"""

from ._errors import ConnectFailed as ConnectFailed
from ._errors import HttpError as HttpError
from ._errors import ListenerError as ListenerError
from ._errors import NoEndpoint as NoEndpoint
from ._errors import ProxyError as ProxyError
from ._errors import SnapshotError as SnapshotError
from ._errors import StartupError as StartupError
from ._errors import StreamClosed as StreamClosed
from ._errors import TlsSetupError as TlsSetupError
from ._errors import UpstreamError as UpstreamError
from ._options import ServeSettings as ServeSettings
from ._server import Control as Control
from ._server import serve as serve
from ._snapshot import Snapshot as Snapshot
from ._snapshot import parse_snapshot as parse_snapshot
from ._source import ApplyResult as ApplyResult
from ._source import FileSource as FileSource
from ._source import SnapshotSource as SnapshotSource
