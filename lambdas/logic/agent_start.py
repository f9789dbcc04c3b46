"""BootstrapInstance and StartAgent: the two SSM commands, and the agent's config in S3."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from lambdas.constants import agent_config_key
from lambdas.dal.runs_table import RunsTable
from lambdas.env import LambdaEnv
from lambdas.errors import AgentStartFailed, RunNotLive
from lambdas.integrations.ssm_commands import CommandStatus, SsmCommands
from lambdas.logic.agent_commands import (
    AGENT_STARTED,
    START_CONFIRM_SECONDS,
    install_agent_script,
    start_agent_script,
)
from lambdas.logic.containers import agent_container
from lambdas.logic.stopping import ensure_not_stopped
from lambdas.models.steps import BootstrapInfo, StartAgentInput, StepInput

# How long StartAgent waits for the start command's answer: the script's own wait plus SSM's
# delivery, inside the function's 60 s timeout with room for the S3 and DynamoDB calls before.
CONFIRM_SECONDS = START_CONFIRM_SECONDS + 20
CONFIRM_POLL_SECONDS = 1.0


def bootstrap(step: StepInput, env: LambdaEnv, commands: SsmCommands, region: str) -> BootstrapInfo:
    # A retried invocation sends the install again: the script is idempotent.
    command_id = commands.run_shell(
        step.instance.instance_id,
        install_agent_script(env.AGENT_S3_URI, region),
        comment=f"runctl install agent {step.run.run_id}",
        timeout_seconds=env.BOOTSTRAP_TIMEOUT_SECONDS,
    )
    return BootstrapInfo(
        command_id=command_id, deadline=time.time() + env.BOOTSTRAP_TIMEOUT_SECONDS
    )


def agent_config(request: StartAgentInput, env: LambdaEnv, region: str) -> dict[str, Any]:
    """The agent's whole brief (docs/architecture.md, "Agent config")."""
    run = request.run
    return {
        "run_id": run.run_id,
        "attempt": run.attempt,
        "region": region,
        "bucket": env.BUCKET_NAME,
        "table_name": env.RUNS_TABLE_NAME,
        "log_group": env.LOG_GROUP_NAME,
        "task_token": request.task_token,
        "heartbeat_seconds": request.heartbeat_seconds,
        "instance_id": request.instance.instance_id,
        "instance_type": request.instance.instance_type,
        "image": request.instance.image.model_dump(mode="json") if request.instance.image else None,
        "spec": run.spec.model_dump(mode="json"),
        "container": agent_container(run.spec, env),
    }


def start_agent(
    request: StartAgentInput,
    env: LambdaEnv,
    s3: Any,
    commands: SsmCommands,
    table: RunsTable,
    region: str,
    now: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Write the config, store the token, start the agent and confirm it runs; the command id."""
    run = request.run
    s3.put_object(
        Bucket=env.BUCKET_NAME,
        Key=agent_config_key(run.run_id, run.attempt),
        Body=json.dumps(agent_config(request, env, region)).encode(),
        ContentType="application/json",
        ServerSideEncryption="AES256",
    )
    # The stored token lets event rules fail the task at once when the instance dies. Storing
    # it is conditional on no stop request: StopRun then knows whether an agent will run.
    stored = table.update_live(
        run.run_id, run.attempt, now, {"task_token": request.task_token}, unless_stop_requested=True
    )
    if not stored:
        ensure_not_stopped(table, run.run_id, run.attempt)
        raise RunNotLive(f"run {run.run_id} is no longer live; not starting its agent")
    instance_id = request.instance.instance_id
    command_id = commands.run_shell(
        instance_id,
        start_agent_script(env.BUCKET_NAME, run.run_id, run.attempt, region),
        comment=f"runctl start agent {run.run_id}",
        timeout_seconds=120,
    )
    confirm_agent_started(commands, command_id, instance_id, clock, sleep)
    return command_id


def confirm_agent_started(
    commands: SsmCommands,
    command_id: str,
    instance_id: str,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """The start command's line that names the agent's pid; AgentStartFailed when the command
    failed, ended without that line, or had not ended after CONFIRM_SECONDS. Without this, an
    agent that never ran shows only as a heartbeat timeout, minutes later."""
    deadline = clock() + CONFIRM_SECONDS
    status = commands.status(command_id, instance_id)
    while not status.finished:
        if clock() >= deadline:
            raise AgentStartFailed(
                f"the agent start on {instance_id} was not confirmed within {CONFIRM_SECONDS} s "
                f"(command {command_id} is {status.status})"
            )
        sleep(CONFIRM_POLL_SECONDS)
        status = commands.status(command_id, instance_id)
    started = [line for line in status.stdout.splitlines() if line.startswith(AGENT_STARTED)]
    if status.status == "Success" and started:
        return started[-1]
    raise AgentStartFailed(
        f"the agent did not start on {instance_id}: {_last_words(status)} "
        f"(command {command_id}: {status.status})"
    )


def _last_words(status: CommandStatus) -> str:
    """The output's last line, which says why (the script's own message, or the agent's)."""
    lines = (status.stderr.strip() or status.stdout.strip()).splitlines()
    return lines[-1][:500] if lines else "no output"
