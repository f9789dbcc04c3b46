"""One attempt from start to end: stage, run the script, upload, report, end the task token."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .checkpoints import CheckpointSync, newest_checkpoint_manifest
from .clock import utc_now_iso
from .config import AgentConfig
from .errors import AgentError
from .layout import log_stream_name, logs_prefix, metrics_key, outputs_prefix, s3_uri
from .logs import AgentLogHandler, CloudWatchSink, ScriptLogs
from .metrics import MetricsRecorder
from .outputs import upload_outputs
from .periodic import PeriodicThread
from .result import AGENT_FAILED, SCRIPT_FAILED, SUCCEEDED, AgentResult, write_result
from .run_record import RUNNING, STAGING, RunRecord
from .script import (
    build_argv,
    build_env,
    check_runnable,
    exit_code_of,
    kill_group,
    start_script,
)
from .session import ScriptSession
from .staging import stage_code, stage_data
from .streams import ScriptOutput
from .task_token import TaskToken, heartbeat_interval
from .workdir import WorkDirs

logger = logging.getLogger(__name__)
_PACKAGE_LOGGER = logging.getLogger(__name__.split(".")[0])


@dataclass(frozen=True)
class Intervals:
    """How often the background work runs, in seconds; tests make them short."""

    log_flush: float = 2.0
    checkpoint_sync: float = 2.0
    upload_copies: float = 10.0  # stdout.log, stderr.log, metrics.jsonl
    metrics_update: float = 10.0  # latest_metrics on the run item
    heartbeat: float | None = None  # default: a third of the config's heartbeat_seconds
    pipe_grace: float = 10.0  # after the script exits, for its output to drain


@dataclass(frozen=True)
class Clients:
    s3: Any
    dynamodb: Any
    logs: Any
    stepfunctions: Any

    @classmethod
    def for_region(cls, make_client: Callable[[str, str], Any], region: str) -> Clients:
        return cls(
            s3=make_client("s3", region),
            dynamodb=make_client("dynamodb", region),
            logs=make_client("logs", region),
            stepfunctions=make_client("stepfunctions", region),
        )


class AttemptRunner:
    """Runs one attempt; run() always writes result.json and ends the task token."""

    def __init__(
        self, config: AgentConfig, clients: Clients, home: Path, intervals: Intervals
    ) -> None:
        self.config = config
        self.clients = clients
        self.home = home
        self.intervals = intervals
        self.token = TaskToken(clients.stepfunctions, config.task_token)
        self.record = RunRecord(clients.dynamodb, config.table_name, config.run_id, config.attempt)
        self.sink = CloudWatchSink(
            clients.logs, config.log_group, log_stream_name(config.run_id, config.attempt)
        )
        self.started_at = utc_now_iso()
        self.process: subprocess.Popen[bytes] | None = None
        self.output: ScriptOutput | None = None
        self.metrics: MetricsRecorder | None = None
        self.returncode: int | None = None
        self._pushed_metrics_version = 0

    def run(self) -> AgentResult:
        handler = AgentLogHandler(self.sink)
        _PACKAGE_LOGGER.addHandler(handler)
        beat = self.intervals.heartbeat or heartbeat_interval(self.config.heartbeat_seconds)
        flusher = PeriodicThread("log-flush", self.intervals.log_flush, self.sink.flush)
        heartbeat = PeriodicThread("heartbeat", beat, self.token.heartbeat, run_first=True)
        flusher.start()
        heartbeat.start()
        try:
            try:
                result = self._run()
            except Exception as error:  # whatever broke, the token must still be ended
                logger.exception("the agent failed during attempt %s", self.config.attempt)
                result = self._agent_failure(_describe(error))
            heartbeat.stop()
            self.sink.flush()  # the traceback reaches CloudWatch before the instance may go
            self._report(result)
        finally:
            heartbeat.stop()
            flusher.stop()
            _PACKAGE_LOGGER.removeHandler(handler)
            self.sink.flush()
        return result

    def _run(self) -> AgentResult:
        config, spec = self.config, self.config.spec
        dirs = WorkDirs.create(self.home, config.run_id, config.attempt)
        self.record.set_status(STAGING)
        stage_code(self.clients.s3, spec.code_uri, spec.code_sha256, dirs.code, dirs.scratch)
        stage_data(self.clients.s3, spec.data, dirs.data)
        self._note_previous_checkpoint()

        argv = build_argv(spec)
        env = build_env(dict(os.environ), spec, config.run_id, config.attempt, dirs)
        check_runnable(argv, dirs.code, env)
        logs = ScriptLogs(dirs.logs)
        self.metrics = MetricsRecorder(dirs.logs / "metrics.jsonl")
        self.output = ScriptOutput(logs, self.sink, self.metrics)
        checkpoints = CheckpointSync(
            self.clients.s3, config.bucket, config.run_id, config.attempt, dirs.checkpoints
        )
        self.process = start_script(argv, dirs.code, env)
        logger.info("started %s (pid %d)", spec.entry_point, self.process.pid)
        self.record.set_status(RUNNING)

        periodic = [
            PeriodicThread("checkpoints", self.intervals.checkpoint_sync, checkpoints.sync),
            PeriodicThread("log-copies", self.intervals.upload_copies, self._upload_copies),
            PeriodicThread("metrics", self.intervals.metrics_update, self._push_metrics),
        ]
        session = ScriptSession(self.process, self.output, periodic, self.intervals.pipe_grace)
        self.returncode = session.wait()
        logger.info("the script exited with return code %d", self.returncode)

        problems = self._finish(checkpoints, dirs)
        logs.close()
        self.metrics.close()
        return self._script_result(problems)

    def _note_previous_checkpoint(self) -> None:
        # Resuming from it comes with interruption handling; for now it is only reported.
        manifest = newest_checkpoint_manifest(
            self.clients.s3, self.config.bucket, self.config.run_id
        )
        if manifest is not None:
            logger.info(
                "the run has a checkpoint from attempt %s: %s",
                manifest.get("attempt"),
                manifest.get("key"),
            )

    def _finish(self, checkpoints: CheckpointSync, dirs: WorkDirs) -> list[str]:
        """The uploads after the script exited; each runs even if one before it failed."""
        assert self.metrics is not None
        metrics = self.metrics
        config = self.config
        steps: list[tuple[str, Callable[[], object]]] = [
            ("the final checkpoint sync", lambda: checkpoints.sync(final=True)),
            (
                "uploading outputs",
                lambda: upload_outputs(self.clients.s3, dirs.output, config.bucket, config.run_id),
            ),
            (
                "reading output/metrics.jsonl",
                lambda: metrics.ingest_file(dirs.output / "metrics.jsonl"),
            ),
            ("uploading logs and metrics", self._upload_copies),
        ]
        problems = []
        for what, step in steps:
            try:
                step()
            except Exception as error:
                logger.exception("%s failed", what)
                problems.append(f"{what} failed: {_describe(error)}")
        self._push_metrics()
        return problems

    def _upload_copies(self) -> None:
        config = self.config
        if self.output is not None:
            self.output.logs.upload(self.clients.s3, config.bucket, config.run_id, config.attempt)
        if self.metrics is not None:
            self.metrics.upload(self.clients.s3, config.bucket, config.run_id, config.attempt)

    def _push_metrics(self) -> None:
        if self.metrics is None:
            return
        version, latest = self.metrics.latest()
        if version != self._pushed_metrics_version and self.record.set_latest_metrics(latest):
            self._pushed_metrics_version = version

    def _script_result(self, problems: list[str]) -> AgentResult:
        assert self.returncode is not None
        code = exit_code_of(self.returncode)
        if self.returncode < 0:
            name = _signal_name(-self.returncode)
            message = f"the script was killed by signal {name} (exit code {code})"
        else:
            message = f"the script exited with code {code}"
        if code != 0:
            outcome = SCRIPT_FAILED
        elif problems:
            outcome = AGENT_FAILED
            message += ", but the agent could not finish"
        else:
            outcome = SUCCEEDED
        if problems:
            message += ": " + "; ".join(problems)
        return self._result(outcome, message)

    def _agent_failure(self, message: str) -> AgentResult:
        if self.process is not None and self.process.poll() is None:
            kill_group(self.process)
        try:
            self._upload_copies()  # whatever output the script produced helps explain the failure
        except Exception:
            logger.exception("cannot upload the log copies")
        return self._result(AGENT_FAILED, message)

    def _result(self, outcome: str, message: str) -> AgentResult:
        config = self.config
        started = self.process is not None
        final_metrics = self.metrics.latest()[1] if self.metrics is not None else {}
        return AgentResult(
            outcome=outcome,
            exit_code=exit_code_of(self.returncode) if self.returncode is not None else None,
            stderr_tail=self.output.stderr_tail.text() if self.output is not None else "",
            started_at=self.started_at,
            ended_at=utc_now_iso(),
            outputs_uri=s3_uri(config.bucket, outputs_prefix(config.run_id)) if started else None,
            metrics_uri=(
                s3_uri(config.bucket, metrics_key(config.run_id, config.attempt))
                if started
                else None
            ),
            logs_uri=(
                s3_uri(config.bucket, logs_prefix(config.run_id, config.attempt))
                if started
                else None
            ),
            final_metrics=final_metrics,
            message=message,
        )

    def _report(self, result: AgentResult) -> None:
        """result.json first (FinalizeRun reads it), then the task token."""
        config = self.config
        try:
            write_result(self.clients.s3, config.bucket, config.run_id, config.attempt, result)
        except Exception:
            logger.exception("cannot write result.json")
        body = result.to_json()
        try:
            if result.error_name is None:
                self.token.succeed(body)
            else:
                self.token.fail(result.error_name, body)
            logger.info("attempt %s ended: %s", config.attempt, result.outcome)
        except Exception:
            logger.exception("cannot end the task token")


def _describe(error: BaseException) -> str:
    if isinstance(error, AgentError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
