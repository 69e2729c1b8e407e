"""Shared test harness: real etcd, real processes, polling waits. No mocks of etcd here."""

from ._clock import FakeClock as FakeClock
from ._etcd import EtcdCluster as EtcdCluster
from ._mesh_tls import Exchange as Exchange
from ._mesh_tls import Workload as Workload
from ._mesh_tls import mtls_exchange as mtls_exchange
from ._openapi import assert_documented as assert_documented
from ._pki import TestCA as TestCA
from ._pki import TlsPaths as TlsPaths
from ._procs import Proc as Proc
from ._procs import free_port as free_port
from ._procs import spawn as spawn
from ._relay import Relay as Relay
from ._stored import etcd_state as etcd_state
from ._wait import async_wait_until as async_wait_until
from ._wait import wait_until as wait_until
from ._weft import WeftAgent as WeftAgent
from ._weft import WeftServer as WeftServer
from .fake_kube import Adapters as Adapters
from .fake_kube import FakeKube as FakeKube
from .fake_kube import K8sAdapter as K8sAdapter
from .fake_kube import adapter_token as adapter_token
