"""A local runctl deployment for the length of a `with` block: start runs, follow them, collect."""

from __future__ import annotations

import fcntl
import json
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.exceptions import ClientError

from lambdas.constants import TAG_RUN_ID, outputs_prefix
from lambdas.dal.runs_table import RunsTable
from lambdas.functions import START_PIPELINE_RUN
from lambdas.models.run_spec import RunSpec, split_s3_uri
from runctl.client.follow import RunEvent, RunFollower, RunOutcome, follow_execution
from runctl.data_folders import DataFolder, DataUpload, upload_data_folder
from runctl.errors import DataBucketMissing
from runctl.local.deploy import LocalSettings, LocalStack, deploy
from runctl.local.emulator import REGION, Emulator
from runctl.local.faults import EventDelivery, Fault, FaultInjector
from runctl.local.instances import SESSION_LOCK, hold_lock
from runctl.local.s3_events import PipelineEventDelivery
from runctl.local.stack_outputs import publish_stack_outputs
from runctl.packaging import CodePackage, upload_package
from runctl.run_request import new_run_id

__all__ = ["LocalSession", "RunEvent", "RunOutcome"]


class LocalSession:
    def __init__(self, root: Path, settings: LocalSettings | None = None) -> None:
        self.root = root
        self.settings = settings or LocalSettings()
        self.emulator = Emulator(root, wait_scale=self.settings.wait_scale)
        self.stack: LocalStack

    def __enter__(self) -> LocalSession:
        # Shared by the sessions using this work dir: `runctl local clean` leaves what they share.
        self.root.mkdir(parents=True, exist_ok=True)
        self._in_use = hold_lock(self.root / SESSION_LOCK, fcntl.LOCK_SH)
        try:
            self.emulator.__enter__()
        except BaseException:
            self._in_use.close()
            raise
        try:
            self.stack = deploy(self.settings)
            self.iam = self.emulator.enforce_iam() if self.settings.enforce_iam else None
            session = boto3.session.Session(region_name=REGION)
            self.s3 = session.client("s3")
            self.sfn = session.client("stepfunctions")
            self.logs = session.client("logs")
            self.ec2 = session.client("ec2")
            self.lambda_client = session.client("lambda")
            self.table = RunsTable(self.stack.table, session.client("dynamodb"))
            self.events = EventDelivery(self)
            # AWS emits a state-change event for every termination: so does local mode.
            self.emulator.fleet.on_terminate.append(self.events.state_changed)
            self.injectors: dict[str, FaultInjector] = {}
            # Marker events to StartPipelineRun, when settings.pipelines deployed any.
            self.pipeline_events = (
                PipelineEventDelivery(
                    self.stack.function_arns[START_PIPELINE_RUN.name],
                    self.stack.pipeline_events_queue_url,
                    REGION,
                )
                if self.stack.pipeline_events_queue_url
                else None
            )
        except BaseException:
            self.emulator.__exit__(None, None, None)
            self._in_use.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        for injector in self.injectors.values():
            injector.stop()
        self.events.close()
        if self.pipeline_events is not None:
            self.pipeline_events.close()
        try:
            self.emulator.__exit__(exc_type, exc, traceback)
        finally:
            self._in_use.close()

    def upload_code(self, package: CodePackage) -> tuple[str, int]:
        """Put the archive under its hash, as the client does; the bytes uploaded (0: was there)."""
        return upload_package(self.s3, self.stack.bucket, package)

    def upload_data(self, folder: DataFolder) -> DataUpload:
        """Put a local --data folder in the runctl bucket under its content's hash (see
        runctl/data_folders.py); nothing is uploaded when the same content is there."""
        return upload_data_folder(self.s3, self.stack.bucket, folder)

    def check_data_buckets(self, spec: RunSpec) -> None:
        """Each s3:// data source names a bucket the emulator has (DataBucketMissing if not):
        local mode has only its own bucket, so a run would otherwise fail at ValidateRun."""
        for item in spec.data:
            bucket, _ = split_s3_uri(item.s3_uri)
            try:
                self.s3.head_bucket(Bucket=bucket)
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") not in {"404", "NoSuchBucket"}:
                    raise
                raise DataBucketMissing(
                    f"--data {item.s3_uri}: local mode has no bucket {bucket!r}, only its own "
                    f"({self.stack.bucket}); pass a local folder instead, e.g. "
                    f"--data {item.name}=./{item.name}"
                ) from None

    def start(
        self, spec: dict[str, Any], run_id: str | None = None, faults: list[Fault] | None = None
    ) -> str:
        """Start a run; `faults` are injected at their times from now."""
        run_id = run_id or new_run_id()
        self.sfn.start_execution(
            stateMachineArn=self.stack.state_machine_arn, name=run_id, input=json.dumps(spec)
        )
        if faults:
            self.injectors[run_id] = FaultInjector(self, run_id, faults).start()
        return run_id

    def publish_stack_outputs(self, stack_name: str) -> None:
        """Make this deployment findable as the stack `stack_name` (see stack_outputs.py)."""
        cloudformation = boto3.session.Session(region_name=REGION).client("cloudformation")
        publish_stack_outputs(self.stack, stack_name, cloudformation)

    def stop(self, run_id: str) -> dict[str, Any]:
        """Ask for a graceful stop, as `runctl stop` does: StopRun's answer, or its error."""
        response = self.lambda_client.invoke(
            FunctionName=self.stack.function_arns["StopRun"],
            Payload=json.dumps({"run_id": run_id}).encode(),
        )
        answer: dict[str, Any] = json.loads(response["Payload"].read())
        return answer

    def run_instance_ids(self, run_id: str) -> set[str]:
        """Every instance ever launched for the run, in any state."""
        reservations = self.ec2.describe_instances(
            Filters=[{"Name": f"tag:{TAG_RUN_ID}", "Values": [run_id]}]
        )["Reservations"]
        return {item["InstanceId"] for res in reservations for item in res["Instances"]}

    def execution_arn(self, run_id: str) -> str:
        return self.stack.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{run_id}"

    def wait(
        self,
        run_id: str,
        on_event: Callable[[RunEvent], None] = lambda event: None,
        timeout_seconds: float = 600,
        poll_seconds: float = 0.3,
    ) -> RunOutcome:
        """Follow the run until its execution ends, reporting status changes, metrics and logs."""
        follower = RunFollower(self.table, self.logs, self.stack.log_group, run_id, on_event)
        described = follow_execution(
            self.sfn, self.execution_arn(run_id), follower, timeout_seconds, poll_seconds
        )
        if run_id in self.injectors:
            self.injectors[run_id].stop()
        record = self.table.get(run_id)
        outputs_dir = self._download_outputs(run_id) if record else None
        outcome = RunOutcome(
            run_id=run_id,
            execution_status=described["status"],
            record=record,
            error=described.get("error"),
            cause=described.get("cause"),
            outputs_dir=outputs_dir,
        )
        on_event(RunEvent("end", outcome.status, {"outcome": outcome}))
        return outcome

    def _download_outputs(self, run_id: str) -> Path | None:
        target = self.root / "runs" / run_id / "outputs"
        prefix = outputs_prefix(run_id)
        pages = self.s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.stack.bucket, Prefix=prefix
        )
        keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        for key in keys:
            destination = target / key[len(prefix) :]
            destination.parent.mkdir(parents=True, exist_ok=True)
            self.s3.download_file(self.stack.bucket, key, str(destination))
        return target if keys else None

    def live_instances(self) -> list[str]:
        """Instances of any run that are not terminated (emulated EC2's view)."""
        reservations = self.ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )["Reservations"]
        return [item["InstanceId"] for res in reservations for item in res["Instances"]]
