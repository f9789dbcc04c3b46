"""Errors a user can act on. Each message is one line: what is wrong, then what to do.

The CLI prints the message and exits with `exit_code`; SDK users catch the class.
"""

from __future__ import annotations

# Exit status of a command stopped with Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 130


class RunctlError(Exception):
    """Base of every error the client reports to a user."""

    exit_code = 1


class UsageError(RunctlError):
    """The command itself is wrong (a flag, a path, a config file): exit 2, like click's."""

    exit_code = 2


class SpecError(UsageError):
    """A run option is wrong; the message names the option or RunSpec field."""


class ScriptNotFound(UsageError):
    """The training script does not exist."""


class DataFolderError(UsageError):
    """A local --data path cannot be uploaded: missing, empty, or linking out of itself."""


class DataBucketMissing(UsageError):
    """A --data s3:// URI names a bucket local mode does not have (it has the runctl bucket)."""


class NoContainerEngine(RunctlError):
    """Local mode was asked to run in a container on a machine with no working Docker engine:
    it never runs the script outside the container instead."""


class ConfigError(UsageError):
    """`.runctl.toml` cannot be read; the message names the key."""


class PlotError(UsageError):
    """A plot cannot be written where or how it was asked for."""


class NoCredentials(RunctlError):
    """boto3 found no AWS credentials (or they expired)."""


class AwsUnreachable(RunctlError):
    """The AWS endpoint did not answer."""


class StackNotFound(RunctlError):
    """No runctl stack of that name in the region (or it is not usable)."""


class RunNotFound(RunctlError):
    """No run with that id in the runs table or the local history."""


class RunNeverStarted(RunctlError):
    """The run's execution ended before the run was recorded (ValidateRun refused it, say):
    there are no logs; `trace` is the failed step's stack trace, when its cause had one."""

    def __init__(self, message: str, trace: str | None = None) -> None:
        super().__init__(message)
        self.trace = trace


class SweepNotFound(RunctlError):
    """No sweep with that id in the stack (or the local history)."""


class StopUnavailable(RunctlError):
    """The deployed stack has no StopRun function (it predates `runctl stop`)."""


class AwsRequestFailed(RunctlError):
    """AWS refused a request for a reason the client has no better words for."""
