"""One attempt from start to end: stage, resume, run the script, upload, report, end the task token.

An interruption notice (notices.py) may come at any time; AttemptEnding decides, once, whether the
attempt ends by it or by itself. On a spot warning (or a rebalance with `rebalance: migrate`) the
agent follows the contract in docs/architecture.md ("Interruptions and resume"), in this order:
run item CHECKPOINTING; the task failed at once with Runctl.Interrupted (no heartbeat after it);
SIGTERM to the script's group, SIGKILL after the grace period; the final checkpoint sync, newest
first, latest.json after its upload; result.json (outcome "interrupted", no outputs uploaded);
handoff.json; the logs flushed. Steps 1-3 run in the notice thread, the rest in the main thread
once the script has exited.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from . import imds
from .checkpoint_manifest import CheckpointVersion
from .checkpoints import CheckpointSync, checkpoint_facts, open_tracker, read_manifest
from .clock import utc_now, utc_now_iso
from .config import REBALANCE_CHECKPOINT, AgentConfig
from .container import (
    ContainerProcess,
    ContainerRun,
    agent_user,
    container_gpus,
    container_labels,
    container_name,
    docker_failed,
    start_container,
)
from .ending import AttemptEnding
from .environment import EnvironmentFailed, EnvironmentInterrupted
from .errors import AgentError, ScriptStartError
from .gpu import GpuCheckFailed
from .layout import log_stream_name, logs_prefix, metrics_key, outputs_prefix, s3_uri
from .logs import AgentLogHandler, CloudWatchSink, ScriptLogs
from .metrics import MetricsRecorder
from .notices import (
    NOTICE_FILE,
    REBALANCE,
    STOP_REQUESTED,
    Notice,
    NoticeWatcher,
    stop_wait_seconds,
)
from .outputs import upload_outputs
from .periodic import PeriodicThread
from .result import (
    AGENT_FAILED,
    CANCELLED,
    ENVIRONMENT_FAILED,
    ERROR_INTERRUPTED,
    GPU_UNAVAILABLE,
    INTERRUPTED,
    SCRIPT_FAILED,
    SUCCEEDED,
    AgentResult,
    write_handoff,
    write_result,
)
from .resume import Resumption, restore_latest_checkpoint
from .run_record import CHECKPOINTING, RUNNING, STAGING, RunRecord
from .s3io import upload_file
from .script import (
    SCRIPT_PATH_DIR,
    build_argv,
    build_env,
    check_runnable,
    exit_code_of,
    kill_group,
    signal_script,
    sigusr1_opted_in,
    start_script,
)
from .session import ScriptSession
from .setup import Setup, set_up
from .staging import StagingInterrupted, stage_code, stage_data
from .streams import ScriptOutput
from .task_token import TaskToken, heartbeat_interval
from .workdir import WorkDirs

logger = logging.getLogger(__name__)
_PACKAGE_LOGGER = logging.getLogger(__name__.split(".")[0])
# How long the main thread waits for the notice thread's first two steps (status, task failure)
# before it writes result.json and handoff.json; each is one AWS call with retries.
_NOTICE_STEPS_TIMEOUT = 60.0
_DEFAULT_IMDS = object()
ENVIRONMENT_LOG = "environment.log"


@dataclass(frozen=True)
class Intervals:
    """How often the background work runs, in seconds; tests make them short."""

    log_flush: float = 2.0
    checkpoint_sync: float = 2.0  # without inotify: two scans tell a file held still
    checkpoint_sync_watched: float = 0.5  # with inotify: a pass with nothing new is cheap
    checkpoint_facts: float = 15.0  # at most this often, the newest checkpoint on the run item
    upload_copies: float = 10.0  # stdout.log, stderr.log, metrics.jsonl
    metrics_update: float = 10.0  # latest_metrics on the run item
    heartbeat: float | None = None  # default: a third of the config's heartbeat_seconds
    pipe_grace: float = 10.0  # after the script exits, for its output to drain
    imds_poll: float = 2.0  # interruption notices: IMDS and $RUNCTL_HOME/notice.json


@dataclass(frozen=True)
class Clients:
    s3: Any
    dynamodb: Any
    logs: Any
    stepfunctions: Any
    ecr: Any = None  # a container run's ECR login

    @classmethod
    def for_region(cls, make_client: Callable[[str, str], Any], region: str) -> Clients:
        return cls(
            s3=make_client("s3", region),
            dynamodb=make_client("dynamodb", region),
            logs=make_client("logs", region),
            stepfunctions=make_client("stepfunctions", region),
            ecr=make_client("ecr", region),
        )


class AttemptRunner:
    """Runs one attempt; run() always writes result.json and ends the task token (once)."""

    def __init__(
        self,
        config: AgentConfig,
        clients: Clients,
        home: Path,
        intervals: Intervals,
        imds_client: Any = _DEFAULT_IMDS,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        self.config = config
        self.clients = clients
        self.home = home
        self.intervals = intervals
        self.now = now
        self.imds_client = _default_imds() if imds_client is _DEFAULT_IMDS else imds_client
        self.token = TaskToken(clients.stepfunctions, config.task_token)
        self.record = RunRecord(clients.dynamodb, config.table_name, config.run_id, config.attempt)
        self.sink = CloudWatchSink(
            clients.logs, config.log_group, log_stream_name(config.run_id, config.attempt)
        )
        self.ending = AttemptEnding()
        self.started_at = utc_now_iso()
        self.process: subprocess.Popen[bytes] | None = None
        self.output: ScriptOutput | None = None
        self.metrics: MetricsRecorder | None = None
        self.checkpoints: CheckpointSync | None = None
        self.dirs: WorkDirs | None = None
        self.resumption = Resumption()
        self._facts_written_at: float | None = None
        self.returncode: int | None = None
        self.setup: Setup | None = None
        self._checkpoint_thread: PeriodicThread | None = None
        self._notice_steps_done = threading.Event()
        self._pushed_metrics_version = 0

    def run(self) -> AgentResult:
        handler = AgentLogHandler(self.sink)
        _PACKAGE_LOGGER.addHandler(handler)
        beat = self.intervals.heartbeat or heartbeat_interval(self.config.heartbeat_seconds)
        flusher = PeriodicThread("log-flush", self.intervals.log_flush, self.sink.flush)
        heartbeat = PeriodicThread("heartbeat", beat, self.token.heartbeat, run_first=True)
        watcher = NoticeWatcher(self.home / NOTICE_FILE, self.imds_client, self._on_notice)
        notices = PeriodicThread("notices", self.intervals.imds_poll, watcher.poll, run_first=True)
        flusher.start()
        heartbeat.start()
        notices.start()
        try:
            try:
                result = self._run()
            except Exception as error:  # whatever broke, the token must still be ended
                logger.exception("the agent failed during attempt %s", self.config.attempt)
                result = self._after_agent_error(_describe(error))
            heartbeat.stop()
            # A notice since the last look changes nothing now, but the log says it came.
            notices.stop(final_tick=True)
            self.sink.flush()  # the traceback reaches CloudWatch before the instance may go
            self._report(result)
        finally:
            if self.checkpoints is not None and self.checkpoints.tracker is not None:
                self.checkpoints.tracker.close()  # its inotify instance, however the attempt ended
            if isinstance(self.process, ContainerProcess):
                self.process.clean_up()  # no container outlives its attempt
            notices.stop()
            heartbeat.stop()
            flusher.stop()
            _PACKAGE_LOGGER.removeHandler(handler)
            self.sink.flush()
        return result

    def _run(self) -> AgentResult:
        config, spec = self.config, self.config.spec
        dirs = WorkDirs.create(self.home, config.run_id)
        self.dirs = dirs
        self.record.set_status(STAGING)
        stage_code(self.clients.s3, spec.code_uri, spec.code_sha256, dirs.code, dirs.scratch)
        if self.ending.interrupted:  # staging can be long: skip what is left of it
            return self._finish_interrupted()
        try:
            self.setup = set_up(
                config,
                self.clients.s3,
                self.home,
                dirs.code,
                dirs.scratch,
                dirs.logs / ENVIRONMENT_LOG,
                lambda: self.ending.interrupted,
                ecr=self.clients.ecr,
            )
        except EnvironmentInterrupted as stopped:
            logger.info("environment set-up stopped: %s", stopped)
            return self._finish_interrupted()
        except (EnvironmentFailed, GpuCheckFailed) as error:
            return self._setup_failure(error)
        self.record.set_setup(self.setup.phases())
        logger.info("environment: %s", self.setup.environment_phase())
        try:
            stage_data(self.clients.s3, spec.data, dirs.data, lambda: self.ending.interrupted)
        except StagingInterrupted as stopped:
            logger.info("data staging stopped: %s", stopped)
        if self.ending.interrupted:
            return self._finish_interrupted()
        checkpoints = self._resume(dirs)
        if self.setup.image is not None:  # pulled meanwhile: the script starts once it is there
            try:
                self.setup.image.wait()
            except EnvironmentInterrupted as stopped:
                logger.info("image preparation stopped: %s", stopped)
                return self._finish_interrupted()
            except EnvironmentFailed as error:
                return self._setup_failure(error)
            self.record.set_setup(self.setup.phases())
        start = self._script_starter(dirs)
        logs = ScriptLogs(dirs.logs)
        self.metrics = MetricsRecorder(dirs.logs / "metrics.jsonl")
        self.output = ScriptOutput(logs, self.sink, self.metrics)
        periodic = [
            PeriodicThread(
                "checkpoints",
                self.intervals.checkpoint_sync_watched
                if checkpoints.tracker is not None
                else self.intervals.checkpoint_sync,
                checkpoints.sync,
            ),
            PeriodicThread("log-copies", self.intervals.upload_copies, self._upload_copies),
            PeriodicThread("metrics", self.intervals.metrics_update, self._push_metrics),
        ]
        self._checkpoint_thread = periodic[0]
        process = self.ending.start_script(start)
        if process is None:
            logger.info("the script is not started: the attempt was interrupted while staging")
            logs.close()
            self.metrics.close()
            return self._finish_interrupted()
        self.process = process
        logger.info("started %s (pid %d)", spec.entry_point, process.pid)
        self.record.set_status(RUNNING)

        session = ScriptSession(process, self.output, periodic, self.intervals.pipe_grace)
        self.returncode = session.wait()
        logger.info("the script exited with return code %d", self.returncode)
        if not self.ending.end_by_itself():
            result = self._finish_interrupted()
        else:
            result = self._script_result(self._finish(checkpoints, dirs))
        logs.close()
        self.metrics.close()
        return result

    def _script_starter(self, dirs: WorkDirs) -> Callable[[], subprocess.Popen[bytes]]:
        """How the script is started: a process here, or a container. ScriptStartError first
        when it cannot be."""
        config, spec = self.config, self.config.spec
        assert self.setup is not None
        argv = build_argv(spec, self.setup.python)
        resume_from = self.resumption.local_path
        if config.container is None:
            env = build_env(
                dict(os.environ), spec, config.run_id, config.attempt, dirs, resume_from
            )
            check_runnable(argv, dirs.code, env)
            return lambda: start_script(argv, dirs.code, env)
        if not (dirs.code / spec.entry_point).is_file():
            raise ScriptStartError(f"entry point {spec.entry_point!r} is not in the code archive")
        run = ContainerRun(
            image=config.container.image,
            name=container_name(config.run_id, config.attempt),
            command=argv,
            workdir=dirs.code,
            mounts=[dirs.root],
            read_only_mounts=[SCRIPT_PATH_DIR],
            # The script's variables only: the host's PATH and the rest stay outside.
            env=build_env({}, spec, config.run_id, config.attempt, dirs, resume_from),
            nvidia_gpus=container_gpus(config.image.nvidia_gpus),
            user=agent_user(),
            labels=container_labels(config.run_id, config.attempt, self.home),
        )
        return lambda: start_container(run, os.environ)

    def _resume(self, dirs: WorkDirs) -> CheckpointSync:
        """Hand the run's newest checkpoint to the script (ResumeError, and the attempt fails
        before the script starts, when none it lists can be had intact); then watch for new
        ones."""
        config = self.config
        resumption = restore_latest_checkpoint(
            self.clients.s3, config.bucket, config.run_id, dirs.checkpoints
        )
        self.resumption = resumption
        checkpoints = CheckpointSync(
            self.clients.s3,
            config.bucket,
            config.run_id,
            config.attempt,
            dirs.checkpoints,
            dirs.scratch / "checkpoint-snapshots",
            keep=config.spec.checkpoints_keep,
            tracker=open_tracker(dirs.checkpoints),
            on_durable=self._on_durable_checkpoint,
        )
        self.checkpoints = checkpoints
        checkpoints.adopt(resumption.listed)
        restored = resumption.restored
        if restored is None:
            logger.info("no checkpoint: starting from scratch")
        else:
            checkpoints.mark_present(restored)
            logger.info(
                "resuming from checkpoint %s (step %s, saved by attempt %s at %s)",
                restored.name,
                restored.step,
                restored.attempt,
                restored.saved_at,
            )
        self._record_checkpoint_facts()
        return checkpoints

    def _on_durable_checkpoint(self, _version: CheckpointVersion) -> None:
        """Keep the run item's newest checkpoint current (for a lost instance it is the last
        word), at most every `checkpoint_facts` seconds; the attempt's end writes it anyway."""
        now = time.monotonic()
        if self._facts_written_at is None or now - self._facts_written_at >= (
            self.intervals.checkpoint_facts
        ):
            self._record_checkpoint_facts()

    def _record_checkpoint_facts(self) -> None:
        self._facts_written_at = time.monotonic()
        self.record.set_checkpoints(self._checkpoint_facts())

    def _checkpoint_facts(self) -> dict[str, Any]:
        checkpoints = self.checkpoints
        return checkpoint_facts(
            self.resumption.restored,
            checkpoints.newest if checkpoints is not None else None,
            self.resumption.skipped,
            list(checkpoints.not_durable.values()) if checkpoints is not None else [],
        )

    # Notices: called in the notice thread.

    def _on_notice(self, notice: Notice) -> None:
        rebalance_policy = self.config.spec.interruptions.rebalance
        if notice.kind == REBALANCE and rebalance_policy == REBALANCE_CHECKPOINT:
            self._checkpoint_now()
        elif notice.kind == STOP_REQUESTED:
            self._stop_on_request(notice)
        else:
            self._interrupt(notice)

    def _stop_on_request(self, notice: Notice) -> None:
        """The user's stop: SIGTERM and the grace period; unlike an interruption the task ends
        only after the uploads (the main thread's _finish_stopped), as nothing is resumed."""
        claimed, process = self.ending.interrupt(notice)
        if not claimed:
            logger.info("the attempt is ending already: the stop request changes nothing")
            return
        self._notice_steps_done.set()
        if process is None:
            return  # still staging: the main thread will not start the script
        wait = float(self.config.spec.interruptions.grace_seconds)
        logger.warning(
            "stop requested: SIGTERM now, SIGKILL in %.1f s if the script still runs", wait
        )
        kill_group(process, grace_seconds=wait, before_kill=self._before_kill)

    def _checkpoint_now(self) -> None:
        """A rebalance recommendation with `rebalance: checkpoint`: the run goes on."""
        process = self.ending.running_script()
        if process is None:
            logger.info("rebalance recommended while no script runs: nothing to checkpoint")
            return
        if sigusr1_opted_in(self.config.spec):
            if signal_script(process, signal.SIGUSR1):
                logger.info("rebalance recommended: sent SIGUSR1 to the script to checkpoint")
        else:
            logger.info("rebalance recommended: syncing the checkpoints written so far")
        if self._checkpoint_thread is not None:
            self._checkpoint_thread.trigger()

    def _interrupt(self, notice: Notice) -> None:
        """Steps 1-3 of the contract; the main thread does the rest once the script is gone."""
        claimed, process = self.ending.interrupt(notice)
        if not claimed:
            logger.info("the attempt is ending already: the %s notice changes nothing", notice.kind)
            return
        try:
            try:
                self.record.set_status(CHECKPOINTING, reason=notice.kind)
            except Exception:  # set_status logs AWS errors itself; this is anything else
                logger.exception("cannot set the run item to %s", CHECKPOINTING)
            try:
                # At once, so the state machine starts the next attempt while this one saves.
                if self.token.fail(ERROR_INTERRUPTED, notice.cause()):
                    logger.info(
                        "task failed with %s: the next attempt can start", ERROR_INTERRUPTED
                    )
            except Exception:
                logger.exception("cannot fail the task now; trying again when the attempt ends")
        finally:
            self._notice_steps_done.set()
        if process is None:
            return  # still staging: the main thread will not start the script
        wait = stop_wait_seconds(
            self.config.spec.interruptions.grace_seconds, notice.termination_time, self.now()
        )
        logger.warning("stopping the script: SIGTERM now, SIGKILL in %.1f s if it still runs", wait)
        kill_group(process, grace_seconds=wait, before_kill=self._before_kill)

    def _before_kill(self) -> None:
        if self.checkpoints is not None:
            self.checkpoints.before_kill()

    # The end of an interrupted attempt: main thread.

    def _finish_interrupted(self, problems: list[str] | None = None) -> AgentResult:
        notice = self.ending.notice
        assert notice is not None
        if notice.kind == STOP_REQUESTED:
            return self._finish_stopped(problems or [])
        if not self._notice_steps_done.wait(_NOTICE_STEPS_TIMEOUT):
            logger.warning("the notice's status and task updates are still pending; going on")
        problems = list(problems or [])
        steps: list[tuple[str, Callable[[], object]]] = []
        checkpoints = self.checkpoints
        if checkpoints is not None:
            # A script killed mid-write may have left a torn file under a complete name.
            killed = self.returncode == -signal.SIGKILL
            steps.append(
                (
                    "the final checkpoint sync",
                    lambda: checkpoints.sync(final=True, killed=killed),
                )
            )
            steps.append(("recording the checkpoints", self._record_checkpoint_facts))
        steps.append(("uploading logs and metrics", self._upload_copies))
        return self._interrupted_result(notice, problems + _run_each(steps))

    def _finish_stopped(self, problems: list[str]) -> AgentResult:
        """The run ends here: keep everything it made (checkpoints, outputs, logs, metrics)."""
        if self.process is None or self.checkpoints is None or self.dirs is None:
            message = "stopped on request before the script started"
        else:
            problems = problems + self._finish(self.checkpoints, self.dirs)
            message = (
                f"stopped on request: {self._script_fate()}; the newest checkpoint, the outputs "
                "and the logs are uploaded"
            )
        if problems:
            message += "; " + "; ".join(problems)
        return self._result(CANCELLED, message)

    def _script_fate(self) -> str:
        if self.process is None:
            return "the script had not started"
        if self.returncode is None:
            return "the script was stopped"
        code = exit_code_of(self.returncode)
        if self.returncode == -signal.SIGKILL:
            return f"the script was killed by SIGKILL after the grace period (exit code {code})"
        if self.returncode < 0:
            name = _signal_name(-self.returncode)
            return f"the script was stopped by signal {name} (exit code {code})"
        return f"the script exited with code {code}"

    def _interrupted_result(self, notice: Notice, problems: list[str]) -> AgentResult:
        script = self._script_fate()
        message = (
            f"interrupted by a {notice.kind} notice (at {notice.notice_time}, "
            f"from {notice.source or 'notice.json'}): {script}; outputs are not uploaded for an "
            "interrupted attempt, as the run is not finished: it goes on in the next attempt"
        )
        if problems:
            message += "; " + "; ".join(problems)
        result = self._result(INTERRUPTED, message)
        result.outputs_uri = None
        return result

    def _handoff_checkpoint(self) -> dict[str, Any] | None:
        """The newest checkpoint latest.json lists now: this attempt's view once it resumed,
        else what S3 has (written by an earlier attempt, or nothing); None also when it cannot
        be read."""
        if self.checkpoints is not None:
            newest = self.checkpoints.newest
            return newest.summary() if newest is not None else None
        config = self.config
        try:
            versions = read_manifest(self.clients.s3, config.bucket, config.run_id)
        except Exception:
            logger.exception("cannot read latest.json for the handoff")
            return None
        return versions[0].summary() if versions else None

    def _after_agent_error(self, message: str) -> AgentResult:
        if self.ending.end_by_itself():
            return self._agent_failure(message)
        # A notice came first: the task was failed with Runctl.Interrupted; still save and hand off.
        if self.process is not None:
            if self.process.poll() is None:
                kill_group(self.process)
            self.returncode = self.process.returncode
        return self._finish_interrupted([f"the agent failed: {message}"])

    def _finish(self, checkpoints: CheckpointSync, dirs: WorkDirs) -> list[str]:
        """The uploads after the script exited; each runs even if one before it failed."""
        assert self.metrics is not None
        metrics = self.metrics
        config = self.config
        killed = self.returncode == -signal.SIGKILL
        steps: list[tuple[str, Callable[[], object]]] = [
            ("the final checkpoint sync", lambda: checkpoints.sync(final=True, killed=killed)),
            ("recording the checkpoints", self._record_checkpoint_facts),
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
        problems = _run_each(steps)
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
        stderr = self.output.stderr_tail.text() if self.output is not None else ""
        if code != 0 and isinstance(self.process, ContainerProcess) and docker_failed(code, stderr):
            outcome = ENVIRONMENT_FAILED  # the script never ran: the image cannot run it
            message = f"docker could not run the script in its image (exit code {code})"
        elif code != 0:
            outcome = SCRIPT_FAILED
        elif problems:
            outcome = AGENT_FAILED
            message += ", but the agent could not finish"
        else:
            outcome = SUCCEEDED
        if problems:
            message += ": " + "; ".join(problems)
        return self._result(outcome, message)

    def _setup_failure(self, error: EnvironmentFailed | GpuCheckFailed) -> AgentResult:
        """No script ran: the environment or the GPU is not usable on this instance."""
        if self.ending.interrupted:
            return self._finish_interrupted([f"set-up failed: {error}"])
        logger.error("set-up failed: %s", error)
        self._upload_environment_log()
        outcome = GPU_UNAVAILABLE if isinstance(error, GpuCheckFailed) else ENVIRONMENT_FAILED
        return self._result(outcome, str(error))

    def _upload_environment_log(self) -> None:
        """The installer's whole output, next to the script's logs."""
        if self.dirs is None or not (self.dirs.logs / ENVIRONMENT_LOG).is_file():
            return
        config = self.config
        key = logs_prefix(config.run_id, config.attempt) + ENVIRONMENT_LOG
        try:
            upload_file(self.clients.s3, self.dirs.logs / ENVIRONMENT_LOG, config.bucket, key)
        except Exception:
            logger.exception("cannot upload %s", ENVIRONMENT_LOG)

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
        dropped = self.metrics.dropped() if self.metrics is not None else 0
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
            final_metrics_dropped=dropped,
            message=message,
            environment=self.setup.environment_phase() if self.setup else None,
            gpu=self.setup.gpu.to_dict() if self.setup and self.setup.gpu else None,
        )

    def _report(self, result: AgentResult) -> None:
        """result.json first (FinalizeRun reads it); then handoff.json for an interrupted attempt
        (its task was failed when the notice came), or the task token's one and only end."""
        config = self.config
        try:
            write_result(self.clients.s3, config.bucket, config.run_id, config.attempt, result)
        except Exception:
            logger.exception("cannot write result.json")
        if result.outcome == INTERRUPTED:
            self._hand_off(result)
            return
        body = result.to_json()
        try:
            if result.error_name is None:
                ended = self.token.succeed(body)
            else:
                ended = self.token.fail(result.error_name, body)
            if ended:
                logger.info("attempt %s ended: %s", config.attempt, result.outcome)
        except Exception:
            logger.exception("cannot end the task token")

    def _hand_off(self, result: AgentResult) -> None:
        config = self.config
        notice = self.ending.notice
        assert notice is not None
        self.sink.flush()  # what the log says so far is kept even if the instance goes now
        try:
            write_handoff(
                self.clients.s3,
                config.bucket,
                config.run_id,
                config.attempt,
                notice.kind,
                self._handoff_checkpoint(),
                utc_now_iso(),
            )
            logger.info("attempt %s handed off: %s", config.attempt, result.outcome)
        except Exception:
            logger.exception("cannot write handoff.json")
        try:
            if self.token.retry_undelivered():
                logger.info("task failed with %s on the second try", ERROR_INTERRUPTED)
        except Exception:
            logger.exception("cannot end the task token")


def _run_each(steps: list[tuple[str, Callable[[], object]]]) -> list[str]:
    """Run every step even if one before it failed; what failed, one line each."""
    problems = []
    for what, step in steps:
        try:
            step()
        except Exception as error:
            logger.exception("%s failed", what)
            problems.append(f"{what} failed: {_describe(error)}")
    return problems


def _describe(error: BaseException) -> str:
    if isinstance(error, AgentError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _default_imds() -> imds.ImdsClient | None:
    try:
        return imds.ImdsClient(timeout=1.0)
    except imds.ImdsError as error:
        logger.warning("not watching instance metadata for notices: %s", error)
        return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)
