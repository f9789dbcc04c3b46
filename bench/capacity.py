"""Time to reach on-demand when EC2 refuses every spot pool: a whole local run whose allowed
types (3) have no spot capacity in any of the default VPC's 6 zones, refused at the HTTP layer
(InsufficientInstanceCapacity, HTTP 500) as EC2 does; the first LaunchInstance state's duration
comes from the execution history. LaunchInstance's timeout is 60 s. The run is stopped once its
first attempt is launched: the rest of it is measured elsewhere."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from runctl.local.capacity import NoCapacity
from runctl.local.session import LocalSession
from runctl.packaging import package_directory

TYPES = ("g5.xlarge", "g4dn.xlarge", "g6.xlarge")
LAUNCH_STATE = "LaunchInstance"


def on_demand_figures() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as scratch, LocalSession(Path(scratch)) as session:
        for instance_type in TYPES:
            session.emulator.capacity.refuse(NoCapacity(instance_type, "spot"))
        project = Path(scratch) / "project"
        project.mkdir()
        (project / "train.py").write_text("print('ok')\n")
        package = package_directory(project)
        code_uri, _ = session.upload_code(package)
        run_id = session.start(
            {
                "code": {"s3_uri": code_uri, "sha256": package.sha256},
                "entry_point": "train.py",
                "instance_types": list(TYPES),
            }
        )
        market = _first_attempt_market(session, run_id)
        figures = {
            "launch_seconds": _state_seconds(session, run_id, LAUNCH_STATE),
            "spot_options_refused": len(session.emulator.capacity.refusals),
            "market": market,
            "lambda_timeout_seconds": 60,
        }
        session.stop(run_id)
        session.wait(run_id, timeout_seconds=120)
        return figures


def _first_attempt_market(session: LocalSession, run_id: str) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        record = session.table.get(run_id)
        attempt = record.attempts.get("1") if record is not None else None
        if attempt is not None and attempt.market:
            return attempt.market
        time.sleep(0.2)
    raise TimeoutError(f"{run_id}: attempt 1 was not launched within 120 s")


def _state_seconds(session: LocalSession, run_id: str, name: str) -> float:
    """From the state's first entry to its first exit (a Retry stays inside; a later attempt
    enters it again). The exit may reach the history just after the attempt's record."""
    deadline = time.monotonic() + 30
    while (seconds := _history_seconds(session, run_id, name)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{run_id}: {name} did not finish within 30 s of its record")
        time.sleep(0.2)
    return seconds


def _history_seconds(session: LocalSession, run_id: str, name: str) -> float | None:
    paginator = session.sfn.get_paginator("get_execution_history")
    entered, exited = None, None
    for page in paginator.paginate(executionArn=session.execution_arn(run_id)):
        for event in page["events"]:
            details = event.get("stateEnteredEventDetails") or event.get("stateExitedEventDetails")
            if not details or details["name"] != name:
                continue
            if event["type"].endswith("StateEntered") and entered is None:
                entered = event["timestamp"]
            elif event["type"].endswith("StateExited") and exited is None:
                exited = event["timestamp"]
    if entered is None or exited is None:
        return None
    return float((exited - entered).total_seconds())


def print_on_demand_figures(figures: dict[str, Any]) -> None:
    label = f"launch reaching on-demand, {figures['spot_options_refused']} spot refused"
    print(
        f"{label:<48} {figures['launch_seconds']:.2f} s "
        f"(Lambda timeout {figures['lambda_timeout_seconds']} s)"
    )


if __name__ == "__main__":
    print_on_demand_figures(on_demand_figures())
