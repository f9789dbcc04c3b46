"""The runctl SDK: `Client` for the deployed stack; RunRequest describes a run."""

from runctl.client.client import Client, RunState, StopResult, Submission
from runctl.errors import (
    NoCredentials,
    RunctlError,
    RunNotFound,
    ScriptNotFound,
    SpecError,
    StackNotFound,
)
from runctl.run_request import RunRequest

__all__ = [
    "Client",
    "NoCredentials",
    "RunNotFound",
    "RunRequest",
    "RunState",
    "RunctlError",
    "ScriptNotFound",
    "SpecError",
    "StackNotFound",
    "StopResult",
    "Submission",
]
