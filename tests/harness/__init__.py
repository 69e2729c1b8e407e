"""Shared test harness: real etcd, real processes, polling waits. No mocks of etcd here."""

from ._etcd import EtcdCluster as EtcdCluster
from ._pki import TestCA as TestCA
from ._pki import TlsPaths as TlsPaths
from ._procs import Proc as Proc
from ._procs import free_port as free_port
from ._procs import spawn as spawn
from ._relay import Relay as Relay
from ._wait import async_wait_until as async_wait_until
from ._wait import wait_until as wait_until
