"""The runctl SDK: `Client` for the deployed stack; RunRequest describes a run, SweepOptions
a sweep over it."""

from runctl.client.client import Client, RunState, StopResult, Submission, SweepSubmission
from runctl.errors import (
    NoCredentials,
    RunctlError,
    RunNotFound,
    ScriptNotFound,
    SpecError,
    StackNotFound,
    SweepNotFound,
)
from runctl.run_request import RunRequest
from runctl.sweeps import SweepOptions, SweepOutcome

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
    "SweepNotFound",
    "SweepOptions",
    "SweepOutcome",
    "SweepSubmission",
]
