"""Errors the steps raise. Step Functions sees the class name as the error name."""

from __future__ import annotations


class RunctlError(Exception):
    """Base of the errors a step raises on purpose; the message is what the user reads."""


class RunSpecInvalid(RunctlError):
    """The RunSpec (or the run id) is wrong; nothing has been created."""


class RunAlreadyExists(RunctlError):
    """A run with this id was recorded by another execution."""


class CapacityUnavailable(RunctlError):
    """Every instance type, zone and market allowed by the RunSpec was out of capacity."""


class NoDefaultVpc(RunctlError):
    """No subnets are configured and the region has no default VPC to launch into."""


class InstanceStartTimeout(RunctlError):
    """The instance did not run and register with SSM before the deadline."""


class InstanceLost(RunctlError):
    """The instance stopped or terminated before the run could start on it."""


class RunNotLive(RunctlError):
    """The run ended (for example it was cancelled) while this step was working on it."""


class RunNotFound(RunctlError):
    """No run has this id."""


class RunStopped(RunctlError):
    """The user asked to stop the run before its agent started: it ends CANCELLED."""


class BootstrapFailed(RunctlError):
    """Installing the agent over SSM failed or did not finish in time."""


class AgentStartFailed(RunctlError):
    """The start command ran but the agent process did not start (or not in time): the attempt
    ends agent-failed and PlanNextAttempt tries another instance at once."""


class SweepSpecInvalid(RunctlError):
    """The SweepSpec is wrong, or its runs could not start (missing code); nothing has started."""


class SweepNotFound(RunctlError):
    """No sweep has this id (ExpandSweep never wrote its plan)."""


class SweepStopIncomplete(RunctlError):
    """Some of the sweep's runs could not be asked to stop; a retry asks them again."""


class ImageBuildFailed(RunctlError):
    """The run's container image could not be built (the build's last log lines say why);
    nothing was launched."""
