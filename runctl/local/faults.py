"""Fault injection for local runs: spot warnings, rebalance notices and lost instances, delivered
through the instance's IMDS and EventBridge-shaped events, the way AWS delivers them."""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from runctl.local.emulator import REGION
from runctl.local.instances import LocalInstance

if TYPE_CHECKING:
    from runctl.local.session import LocalSession

ACCOUNT = "123456789012"

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fault:
    kind: str  # "interrupt" | "rebalance" | "kill"
    after_seconds: float
    # Also wait until the run item has this status (e.g. "STAGING"): deterministic stage faults.
    when_status: str | None = None
    # Or until an upload of one of the run's keys containing this text begins
    # (e.g. "/checkpoints/": fires while a large checkpoint is on its way to S3).
    when_upload: str | None = None
    # ... the Nth such upload (2: a checkpoint is already durable when the next one starts).
    when_upload_count: int = 1
    # An interrupt's notice period (the session's spot_notice_seconds when None).
    notice_seconds: float | None = None


def ec2_event(detail_type: str, instance_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    """An EventBridge event as EC2 sends it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.ec2",
        "account": ACCOUNT,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": REGION,
        "resources": [f"arn:aws:ec2:{REGION}:{ACCOUNT}:instance/{instance_id}"],
        "detail": {"instance-id": instance_id, **detail},
    }


class EventDelivery:
    """Delivers EC2 events to OnInstanceEvent in order, as the EventBridge rules would
    (the emulator cannot invoke Lambda targets itself)."""

    def __init__(self, session: LocalSession) -> None:
        self.session = session
        self.delivered: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._thread.start()

    def send(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def state_changed(self, instance: LocalInstance) -> None:
        self.send(
            ec2_event(
                "EC2 Instance State-change Notification",
                instance.instance_id,
                {"state": "terminated"},
            )
        )

    def flush(self) -> None:
        """Wait until every event sent so far was delivered."""
        self._queue.join()

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            try:
                response = self.session.lambda_client.invoke(
                    FunctionName=self.session.stack.function_arns["OnInstanceEvent"],
                    Payload=json.dumps(event).encode(),
                )
                self.delivered.append((event, json.loads(response["Payload"].read() or b"{}")))
            except Exception as error:  # one failed delivery must not stop the ones after it
                logger.exception("cannot deliver %s", event["detail-type"])
                self.delivered.append((event, {"deliveryError": str(error)}))
            finally:
                self._queue.task_done()
        self._queue.task_done()


class FaultInjector:
    """Applies faults to whatever instance a run is on at the time (times from the start)."""

    def __init__(self, session: LocalSession, run_id: str, faults: list[Fault]) -> None:
        self.session = session
        self.run_id = run_id
        self.faults = sorted(faults, key=lambda fault: fault.after_seconds)
        self.applied: list[tuple[Fault, str, datetime]] = []  # fault, instance, when
        self._stop = threading.Event()
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._work, daemon=True)
        self._terminations: list[threading.Timer] = []  # due at the end of each spot notice

    def start(self) -> FaultInjector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        # The run is over; its instances are gone or terminated by its own cleanup.
        for timer in self._terminations:
            timer.cancel()

    def _work(self) -> None:
        for fault in self.faults:
            delay = self._started + fault.after_seconds - time.monotonic()
            if self._stop.wait(max(delay, 0)):
                return
            if fault.when_status and not self._wait_for_status(fault.when_status):
                return
            if fault.when_upload and not self._wait_for_upload(
                fault.when_upload, fault.when_upload_count
            ):
                return
            instance = self._current_instance()
            if instance is None:
                return
            self.applied.append((fault, instance.instance_id, datetime.now(UTC)))
            try:
                getattr(self, f"_{fault.kind}")(instance, fault)
            except Exception:  # said, so a run that was meant to be faulted is not a mystery
                logger.exception("cannot apply %s to %s", fault, instance.instance_id)

    def _wait_for_upload(self, text: str, count: int) -> bool:
        started = threading.Event()
        prefix = f"runs/{self.run_id}/"
        seen = []

        def watch(key: str) -> None:
            if key.startswith(prefix) and text in key:
                seen.append(key)
                if len(seen) >= count:
                    started.set()

        self.session.emulator.on_upload_started.append(watch)
        try:
            while not self._stop.is_set():
                if started.wait(0.1):
                    return True
            return False
        finally:
            self.session.emulator.on_upload_started.remove(watch)

    def _wait_for_status(self, status: str) -> bool:
        while not self._stop.is_set():
            record = self.session.table.get(self.run_id)
            if record is not None and record.status.value == status:
                return True
            self._stop.wait(0.05)
        return False

    def _current_instance(self) -> LocalInstance | None:
        """The run's newest live instance; waits for one while the run is still starting."""
        while not self._stop.is_set():
            record = self.session.table.get(self.run_id)
            if record is not None and record.status.value in {"SUCCEEDED", "FAILED", "CANCELLED"}:
                return None
            live = [
                instance
                for instance in self.session.emulator.fleet.running()
                if instance.instance_id in self.session.run_instance_ids(self.run_id)
            ]
            if live:
                return live[-1]
            self._stop.wait(0.2)
        return None

    def _interrupt(self, instance: LocalInstance, fault: Fault) -> None:
        notice = fault.notice_seconds or self.session.settings.spot_notice_seconds
        at = (datetime.now(UTC) + timedelta(seconds=notice)).strftime("%Y-%m-%dT%H:%M:%SZ")
        instance.imds.set_notice("spot/instance-action", {"action": "terminate", "time": at})
        self.session.events.send(
            ec2_event(
                "EC2 Spot Instance Interruption Warning",
                instance.instance_id,
                {"instance-action": "terminate"},
            )
        )
        timer = threading.Timer(notice, self._terminate, args=(instance.instance_id,))
        timer.daemon = True
        self._terminations.append(timer)
        timer.start()

    def _rebalance(self, instance: LocalInstance, fault: Fault) -> None:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        instance.imds.set_notice("events/recommendations/rebalance", {"noticeTime": now})
        self.session.events.send(
            ec2_event("EC2 Instance Rebalance Recommendation", instance.instance_id, {})
        )

    def _kill(self, instance: LocalInstance, fault: Fault) -> None:
        self._terminate(instance.instance_id)

    def _terminate(self, instance_id: str) -> None:
        # Through EC2, so the emulator's state, the local processes and the event all agree.
        self.session.ec2.terminate_instances(InstanceIds=[instance_id])
