"""Real systemd test hosts on this machine (docs/testing.md): build, boot, run, ssh, stop."""

from ._host import Bind as Bind
from ._host import SystemdHost as SystemdHost
from ._host import unique_free_port as unique_free_port
from ._inventory import write_inventory as write_inventory
from ._results import HostCommandError as HostCommandError
from ._results import HostError as HostError
from ._results import RunResult as RunResult
from ._root import RootBuildError as RootBuildError
from ._root import cache_dir as cache_dir
from ._root import ensure_root as ensure_root
from ._runs import reap_stale_hosts as reap_stale_hosts
from ._shell import HostShell as HostShell
from ._ssh import SshKeyPair as SshKeyPair
from ._ssh import ssh_client_options as ssh_client_options
