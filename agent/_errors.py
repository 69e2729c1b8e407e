"""Errors of the `agent` package.

AgentError
├── ConfigError        agent.toml is missing, unreadable or breaks a rule (exit 64 at start)
├── DefinitionError    a services.d file breaks a rule: names the file, the field, the rule
└── ServerError        the registry/CA answered with an error the agent cannot retry away
"""

from __future__ import annotations


class AgentError(Exception):
    """Base of every error the agent raises."""


class ConfigError(AgentError, ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class DefinitionError(AgentError):
    def __init__(self, file: str, field: str, message: str) -> None:
        where = f"{file}: {field}" if field else file
        super().__init__(f"{where}: {message}")
        self.file = file
        self.field = field
        self.rule = message


class ServerError(AgentError):
    pass
