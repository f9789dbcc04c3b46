"""The agent's own failures; each becomes outcome `agent-failed` with its message."""

from __future__ import annotations


class AgentError(Exception):
    """Something the agent could not do; the message is shown to the user as is."""


class ConfigError(AgentError):
    """The agent config is missing, unreadable or lacks a field."""


class StagingError(AgentError):
    """Code or data could not be staged (missing object, checksum mismatch, unsafe archive)."""


class ScriptStartError(AgentError):
    """The script could not be started (interpreter or entry point missing)."""
