"""CheckInstance and CheckBootstrap: one poll each, bounded by a deadline set when polling began,
and ended early by a stop request (a boot can take minutes)."""

from __future__ import annotations

from datetime import datetime

from lambdas.dal.runs_table import RunsTable
from lambdas.errors import BootstrapFailed, InstanceLost, InstanceStartTimeout
from lambdas.integrations.ec2_fleet import Ec2Fleet
from lambdas.integrations.ssm_commands import SsmCommands
from lambdas.logic.polling import next_poll_seconds
from lambdas.logic.stopping import end_starting_attempt_if_stopped
from lambdas.models.steps import ReadyProbe, StepInput

_GONE_STATES = {"shutting-down", "terminated", "stopping", "stopped"}
OUTPUT_TAIL_CHARS = 2000


def check_instance(step: StepInput, fleet: Ec2Fleet, table: RunsTable, now: float) -> ReadyProbe:
    end_starting_attempt_if_stopped(table, step.run.run_id, step.run.attempt, step.previous, now)
    instance_id = step.instance.instance_id
    described = fleet.describe(instance_id)
    state = described["State"]["Name"] if described else "unknown"
    if state in _GONE_STATES:
        reason = (described or {}).get("StateReason", {}).get("Message", "no reason given")
        raise InstanceLost(f"instance {instance_id} is {state} before the run started: {reason}")
    online = state == "running" and fleet.ssm_online(instance_id)
    if online:
        return ReadyProbe(ready=True, detail="running and online in SSM")
    detail = f"state {state}, SSM {'online' if online else 'not registered yet'}"
    if now > step.instance.ready_deadline:
        raise InstanceStartTimeout(
            f"instance {instance_id} not ready before the deadline ({detail}); check that the "
            "image runs the SSM agent and the subnet reaches the SSM endpoints"
        )
    return _not_ready(step, detail, now)


def check_bootstrap(
    step: StepInput, commands: SsmCommands, table: RunsTable, now: float
) -> ReadyProbe:
    assert step.bootstrap is not None, "CheckBootstrap needs $.bootstrap"
    end_starting_attempt_if_stopped(table, step.run.run_id, step.run.attempt, step.previous, now)
    status = commands.status(step.bootstrap.command_id, step.instance.instance_id)
    if status.status == "Success":
        return ReadyProbe(ready=True, detail="agent installed")
    if status.finished:
        raise BootstrapFailed(
            f"installing the agent on {step.instance.instance_id} ended {status.status}: "
            f"{_failure_output(status.stderr or status.stdout)}"
        )
    if now > step.bootstrap.deadline:
        raise BootstrapFailed(
            f"installing the agent on {step.instance.instance_id} did not finish in time "
            f"(last status {status.status})"
        )
    return _not_ready(step, status.status, now)


def _failure_output(output: str) -> str:
    """The last line first (a traceback's exception, where summaries cut), then the tail."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if len(lines) <= 1:
        return output.strip()[-OUTPUT_TAIL_CHARS:]
    return f"{lines[-1].strip()[:OUTPUT_TAIL_CHARS]}; output: {output.strip()[-OUTPUT_TAIL_CHARS:]}"


def _not_ready(step: StepInput, detail: str, now: float) -> ReadyProbe:
    """Both polls back off by the time since launch: the boot as a whole is what is slow."""
    waited = now - datetime.fromisoformat(step.instance.launched_at).timestamp()
    return ReadyProbe(
        ready=False, detail=detail, wait_seconds=next_poll_seconds(step.poll_seconds, waited)
    )
