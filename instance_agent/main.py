"""Entry points: main() for `python3 -m instance_agent`, run_agent() for local mode and tests."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import boto3
from botocore.config import Config

from . import imds
from .attempt import AttemptRunner, Clients, Intervals
from .config import parse_config, read_config_json
from .errors import ConfigError
from .result import AGENT_FAILED, ERROR_AGENT_FAILED, INTERRUPTED, SUCCEEDED, AgentResult
from .task_token import TaskToken
from .workdir import runctl_home

logger = logging.getLogger(__name__)

ClientFactory = Callable[[str, Optional[str]], Any]

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 8})


def boto3_client(service: str, region: str | None) -> Any:
    """A boto3 client; endpoint and credentials come from the environment as usual."""
    return boto3.client(service, region_name=region, config=_RETRIES)  # type: ignore[call-overload]


def run_agent(
    config_uri: str,
    *,
    make_client: ClientFactory = boto3_client,
    home: Path | None = None,
    intervals: Intervals | None = None,
) -> AgentResult:
    """Run the attempt the config describes; ConfigError only when there is no token to end."""
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    # S3 follows a bucket in another region by itself, so the instance's default is good enough.
    raw = read_config_json(make_client("s3", region), config_uri)
    try:
        config = parse_config(raw)
    except ConfigError as error:
        _fail_task_of_bad_config(raw, error, make_client)
        raise
    _log_instance_id()
    clients = Clients.for_region(make_client, config.region)
    runner = AttemptRunner(config, clients, home or runctl_home(), intervals or Intervals())
    return runner.run()


def _fail_task_of_bad_config(
    raw: dict[str, Any], error: ConfigError, make_client: ClientFactory
) -> None:
    token, region = raw.get("task_token"), raw.get("region")
    if not isinstance(token, str) or not isinstance(region, str):
        return
    result = AgentResult(outcome=AGENT_FAILED, message=str(error))
    try:
        TaskToken(make_client("stepfunctions", region), token).fail(
            ERROR_AGENT_FAILED, result.to_json()
        )
    except Exception:
        logger.exception("cannot end the task token of an unusable config")


def _log_instance_id() -> None:
    try:
        logger.info("running on instance %s", imds.instance_id(imds.ImdsClient(timeout=1.0)))
    except imds.ImdsError as error:
        logger.info("instance metadata not available (%s); going on", error)


def configure_logging(home: Path) -> None:
    """The agent's own log: ${RUNCTL_HOME}/agent.log and stderr."""
    home.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in (logging.FileHandler(home / "agent.log"), logging.StreamHandler(sys.stderr)):
        handler.setFormatter(formatter)
        root.addHandler(handler)
    for noisy in ("botocore", "boto3", "s3transfer", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def exit_status(result: AgentResult) -> int:
    """0 when the script succeeded or the attempt handed off after an interruption (the run goes
    on in the next attempt), 1 when the attempt failed."""
    return 0 if result.outcome in (SUCCEEDED, INTERRUPTED) else 1


def write_started_file(path: Path) -> None:
    """The pid, whole or not at all (temp name, then rename): the start command reads it as
    proof that this process runs, before the attempt's first S3 call could fail or hang."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(str(os.getpid()))
    os.replace(temporary, path)


def main(argv: list[str] | None = None) -> int:
    """exit_status() of the attempt, or 2 when the config is unusable."""
    parser = argparse.ArgumentParser(
        prog="python3 -m instance_agent",
        description="runctl instance agent: runs the attempt its config in S3 describes.",
    )
    parser.add_argument(
        "--config", required=True, help="s3:// URI of the attempt's agent-config.json"
    )
    parser.add_argument(
        "--started-file",
        type=Path,
        help="written with this process's pid once the agent runs (the start command waits for it)",
    )
    args = parser.parse_args(argv)
    home = runctl_home()
    configure_logging(home)
    if args.started_file is not None:
        write_started_file(args.started_file)
    try:
        result = run_agent(args.config, home=home)
    except ConfigError as error:
        logger.error("%s", error)
        return 2
    logger.info("result: %s", json.dumps(result.to_dict()))
    return exit_status(result)
