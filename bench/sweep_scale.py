"""A sweep of the largest allowed size (MAX_SWEEP_RUNS points) of a one-line script, run to its
summary in local mode: how long it takes, and that the Sweep execution's state and history stay
within AWS's limits whatever the number of runs (the largest state input/output in its
history, and its event count against 25,000).

`python -m bench.sweep_scale [RUNS] [MAX_PARALLEL]`; `make bench` runs it with
RUNCTL_BENCH_SWEEP_RUNS points (default MAX_SWEEP_RUNS: ~30 min on 2 cores at ~3.6 CPU-s a run)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from lambdas.models.sweep_spec import MAX_SWEEP_RUNS
from runctl.local.deploy import LocalSettings
from runctl.local.limits import payload_size
from runctl.local.session import LocalSession
from runctl.local.sweeps import LocalSweeps, local_parallel_limit
from runctl.packaging import package_directory
from runctl.sweeps import sweep_execution_arn

# One metric, so the summary has a best run to name.
SCRIPT = """
import json, os
point = json.loads(os.environ["RUNCTL_HPARAMS"])["point"]
print("RUNCTL_METRIC " + json.dumps({"loss": (point % 97) / 97}))
"""


def sweep_figures(runs: int = MAX_SWEEP_RUNS, max_parallel: int | None = None) -> dict[str, Any]:
    """`max_parallel`: the local limit when None (local runs share this machine's CPUs)."""
    max_parallel = max_parallel or local_parallel_limit()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        settings = LocalSettings(poll_seconds=1, heartbeat_seconds=60)
        with LocalSession(root / "session", settings) as session:
            project = root / "project"
            project.mkdir()
            (project / "train.py").write_text(SCRIPT)
            package = package_directory(project)
            code_uri, _ = session.upload_code(package)
            spec = {
                "base_spec": {
                    "code": {"s3_uri": code_uri, "sha256": package.sha256},
                    "entry_point": "train.py",
                },
                "grid": {"point": list(range(runs))},
                "max_parallel": max_parallel,
                "objective": "loss:min",
            }
            sweeps = LocalSweeps(session)
            started = time.monotonic()
            sweep_id = sweeps.start(spec)
            outcome = sweeps.wait(sweep_id, timeout_seconds=6 * 3600, poll_seconds=5)
            seconds = time.monotonic() - started
            events = _history(session, sweep_execution_arn(sweeps.state_machine_arn, sweep_id))
            return {
                "runs": runs,
                "max_parallel": max_parallel,
                "status": outcome.execution_status,
                "succeeded": outcome.summary.counts.succeeded if outcome.summary else 0,
                "seconds_to_summary": round(seconds, 1),
                "seconds_per_run": round(seconds / runs, 2),
                "sweep_history_events": len(events),
                "largest_state_bytes": max(_state_sizes(events), default=0),
                "failures": _failures(outcome.summary),
            }


def _history(session: LocalSession, execution_arn: str) -> list[dict]:
    events: list[dict] = []
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    while True:
        page = session.sfn.get_execution_history(**kwargs)
        events.extend(page["events"])
        if not page.get("nextToken"):
            return events
        kwargs["nextToken"] = page["nextToken"]


def _state_sizes(events: list[dict]) -> list[int]:
    sizes = []
    for event in events:
        for details in event.values():
            if isinstance(details, dict):
                for key in ("input", "output"):
                    if isinstance(details.get(key), str):
                        sizes.append(payload_size(json.loads(details[key])))
    return sizes


def _failures(summary: Any) -> dict[str, int]:
    """How many runs ended each way other than success (error: count)."""
    counted: dict[str, int] = {}
    for run in summary.runs if summary else []:
        if run.error or run.end_reason != "completed":
            why = f"{run.end_reason}: {(run.error or '')[:160]}"
            counted[why] = counted.get(why, 0) + 1
    return counted


def print_sweep_figures(figures: dict[str, Any]) -> None:
    label = f"sweep of {figures['runs']} points, {figures['max_parallel']} at once"
    print(
        f"{label:<48} {figures['status']} ({figures['succeeded']} succeeded) in "
        f"{figures['seconds_to_summary']:.0f} s"
    )
    print(
        f"{'sweep: history events / largest state':<48} {figures['sweep_history_events']} of "
        f"25,000 / {figures['largest_state_bytes']:,} of 262,144 bytes"
    )


if __name__ == "__main__":
    arguments = [int(value) for value in sys.argv[1:3]]
    print(json.dumps(sweep_figures(*arguments), indent=2))
