"""The Weft host agent: registers the host's services, runs their checks, gets their
certificates and feeds their sidecar proxies. See agent/_daemon.py for the map."""

from ._config import AgentConfig as AgentConfig
from ._daemon import Agent as Agent
from ._definitions import ServiceDef as ServiceDef
from ._definitions import load_directory as load_directory
from ._errors import AgentError as AgentError
from ._errors import ConfigError as ConfigError
from ._errors import DefinitionError as DefinitionError
from ._join import read_token as read_token
from ._notify import Notifier as Notifier
