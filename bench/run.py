"""Measured figures for interruption handling, in local mode (`make bench`).

- warning -> checkpoint durable: from the spot warning to the interrupted attempt's handoff (its
  newest checkpoint and latest.json are in S3 by then);
- warning -> training resumed: from the warning to the next attempt's first training step
  (local instances boot at once, so this excludes EC2's boot time);
- the script's environment: installed cold versus restored from the S3 cache
  (bench/environments.py);
- state transitions per run with 0, 1 and 5 interruptions, and what a week would cost on AWS,
  where a boot takes minutes and is polled (local instances boot at once): the polls a typical
  boot costs with the deployed settings are added to each attempt.
Prints a table and writes bench/results.json.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from datetime import datetime
from pathlib import Path

from bench.capacity import on_demand_figures, print_on_demand_figures
from bench.environments import environment_figures
from bench.history import max_resumes, worst_case_boot_polls, worst_case_history_events
from bench.sweep_scale import print_sweep_figures, sweep_figures
from lambdas.constants import handoff_key, log_stream_name
from lambdas.functions import TRAIN_RUN_SETTINGS
from lambdas.logic.polling import next_poll_seconds
from lambdas.models.run_spec import InterruptionPolicy
from lambdas.models.sweep_spec import MAX_SWEEP_RUNS
from runctl.local.deploy import LocalSettings
from runctl.local.faults import Fault
from runctl.local.session import LocalSession
from runctl.packaging import package_directory

RESULTS = Path(__file__).resolve().parent / "results.json"
SCRIPT = """
import json, os, pathlib, signal, sys, time
ckpt = pathlib.Path(os.environ["RUNCTL_CHECKPOINT_DIR"])
step = 0
if os.environ.get("RUNCTL_RESUME_FROM"):
    step = json.loads(pathlib.Path(os.environ["RUNCTL_RESUME_FROM"]).read_text())["step"]
def save():
    tmp = ckpt / f".c-{step}.tmp"; tmp.write_text(json.dumps({"step": step}))
    tmp.rename(ckpt / f"ckpt-{step:06d}.json")
signal.signal(signal.SIGTERM, lambda *a: (save(), sys.exit(143)))
steps = json.loads(os.environ["RUNCTL_HPARAMS"])["steps"]
while step < steps:
    step += 1
    print("RUNCTL_METRIC " + json.dumps({"step": step}), flush=True)
    if step % 20 == 0:
        save()
    time.sleep(0.05)
"""


# A boot poll is a Wait, a Lambda Task and a Choice: 2 + 5 + 2 history events.
EVENTS_PER_POLL = 9
# A typical EC2 boot: running and online in SSM 90 s after launch, agent installed by 150 s.
TYPICAL_SSM_ONLINE_SECONDS = 90
TYPICAL_AGENT_INSTALLED_SECONDS = 150
POLL_STATES = {"CheckInstance", "CheckBootstrap"}


def aws_boot_polls(online_at: float, installed_at: float) -> int:
    """Polls TrainRun makes for a boot, with the settings `cdk deploy` uses."""
    first = int(TRAIN_RUN_SETTINGS["FirstPollSeconds"])
    base = int(TRAIN_RUN_SETTINGS["PollIntervalSeconds"])
    polls, waited = 1, float(first)
    while waited < online_at:
        waited += next_poll_seconds(base, waited)
        polls += 1
    waited += base  # WaitForBootstrap, then CheckBootstrap
    polls += 1
    while waited < installed_at:
        waited += next_poll_seconds(base, waited)
        polls += 1
    return polls


def _history(session: LocalSession, run_id: str) -> list[dict]:
    events, token = [], None
    while True:
        kwargs = {"executionArn": session.execution_arn(run_id), "maxResults": 1000}
        if token:
            kwargs["nextToken"] = token
        page = session.sfn.get_execution_history(**kwargs)
        events += page["events"]
        token = page.get("nextToken")
        if not token:
            return events


def _polls(events: list[dict]) -> int:
    return sum(
        1
        for event in events
        if event["type"] == "TaskStateEntered"
        and event["stateEnteredEventDetails"]["name"] in POLL_STATES
    )


def _first_step_time(session: LocalSession, run_id: str, attempt: int) -> datetime | None:
    events = session.logs.get_log_events(
        logGroupName=session.stack.log_group,
        logStreamName=log_stream_name(run_id, attempt),
        startFromHead=True,
    )["events"]
    for event in events:
        if event["message"].startswith("RUNCTL_METRIC"):
            return datetime.fromtimestamp(event["timestamp"] / 1000).astimezone()
    return None


def main() -> None:
    # AWS's pacing of Wait states (wait_scale 1.0): the boot polls counted here stand for AWS's.
    settings = LocalSettings(
        poll_seconds=1, heartbeat_seconds=20, spot_notice_seconds=6, wait_scale=1.0
    )
    with tempfile.TemporaryDirectory() as scratch, LocalSession(Path(scratch), settings) as session:
        project = Path(scratch) / "project"
        project.mkdir()
        (project / "train.py").write_text(SCRIPT)
        package = package_directory(project)
        code_uri, _ = session.upload_code(package)

        def run(interruptions: int) -> tuple[str, list]:
            faults = [Fault("interrupt", 4 + 9 * index) for index in range(interruptions)]
            spec = {
                "code": {"s3_uri": code_uri, "sha256": package.sha256},
                "entry_point": "train.py",
                "hyperparameters": {"steps": 200 + 180 * interruptions},
            }
            run_id = session.start(spec, faults=faults)
            outcome = session.wait(run_id, timeout_seconds=600)
            assert outcome.status == "SUCCEEDED", (outcome.error, outcome.cause)
            return run_id, session.injectors.pop(run_id).applied if faults else []

        durable, resumed, transitions = [], [], {}
        for count in (0, 1, 5):
            run_id, applied = run(count)
            events = _history(session, run_id)
            transitions[count] = {
                "history_events": len(events),
                "states_entered": sum(1 for e in events if e["type"].endswith("StateEntered")),
                "boot_polls": _polls(events),
            }
            for attempt, (_, _, warned) in enumerate(applied, start=1):
                body = session.s3.get_object(
                    Bucket=session.stack.bucket, Key=handoff_key(run_id, attempt)
                )["Body"].read()
                completed = datetime.fromisoformat(json.loads(body)["completed_at"])
                durable.append((completed - warned).total_seconds())
                started = _first_step_time(session, run_id, attempt + 1)
                if started is not None:
                    resumed.append((started - warned).total_seconds())

    per_interruption = (transitions[5]["history_events"] - transitions[0]["history_events"]) / 5
    # On AWS each attempt's boot is polled more often than a local instant boot.
    local_polls_per_boot = transitions[0]["boot_polls"]
    aws_polls = aws_boot_polls(TYPICAL_SSM_ONLINE_SECONDS, TYPICAL_AGENT_INSTALLED_SECONDS)
    extra_per_boot = (aws_polls - local_polls_per_boot) * EVENTS_PER_POLL
    aws_first = transitions[0]["history_events"] + extra_per_boot
    aws_per_interruption = per_interruption + extra_per_boot
    budget = InterruptionPolicy.model_fields["max_interruptions"].metadata
    max_allowed = next(item.le for item in budget if hasattr(item, "le"))
    results = {
        "warning_to_checkpoint_durable_seconds": {
            "median": statistics.median(durable),
            "max": max(durable),
            "samples": len(durable),
        },
        "warning_to_training_resumed_seconds": {
            "median": statistics.median(resumed),
            "max": max(resumed),
            "samples": len(resumed),
        },
        "state_transitions": transitions,
        "history_events_per_interruption": per_interruption,
        "aws_estimate": {
            "boot_polls_typical_boot": aws_polls,
            "history_events_run_without_interruption": aws_first,
            "history_events_per_interruption": aws_per_interruption,
            "week_interrupted_every_hour": aws_first + aws_per_interruption * 24 * 7,
            "at_the_interruption_budget_cap": {
                "max_interruptions": max_allowed,
                "history_events": aws_first + aws_per_interruption * max_allowed,
            },
            # Every boot polled to both deadlines, for the most attempts a run can have
            # (bench/history.py).
            "worst_case_at_the_cap": {
                "resumes": max_resumes(),
                "boot_polls": worst_case_boot_polls(),
                "history_events": worst_case_history_events(),
            },
            "limit": 25_000,
        },
    }
    results["environment_install_vs_restore"] = environment_figures()
    results["launch_on_demand_every_spot_pool_refused"] = on_demand = on_demand_figures()
    results["sweep_at_the_size_limit"] = sweep = sweep_figures(
        int(os.environ.get("RUNCTL_BENCH_SWEEP_RUNS", MAX_SWEEP_RUNS))
    )
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{'figure':<48} value")
    print(
        f"{'warning -> checkpoint durable (median, max)':<48} "
        f"{results['warning_to_checkpoint_durable_seconds']['median']:.2f} s, "
        f"{results['warning_to_checkpoint_durable_seconds']['max']:.2f} s"
    )
    print(
        f"{'warning -> training resumed (median, max)':<48} "
        f"{results['warning_to_training_resumed_seconds']['median']:.2f} s, "
        f"{results['warning_to_training_resumed_seconds']['max']:.2f} s"
    )
    for count, figures in transitions.items():
        print(
            f"{f'history events / states entered, {count} interruptions':<48} "
            f"{figures['history_events']} / {figures['states_entered']}"
        )
    aws = results["aws_estimate"]
    print(f"{'AWS: boot polls for a typical 150 s boot':<48} {aws['boot_polls_typical_boot']}")
    print(
        f"{'AWS: history events, run / per interruption':<48} "
        f"{aws['history_events_run_without_interruption']:.0f} / "
        f"{aws['history_events_per_interruption']:.0f}"
    )
    week = aws["week_interrupted_every_hour"]
    print(f"{'AWS: a week, interrupted every hour':<48} {week:.0f} of 25,000 events")
    cap = aws["at_the_interruption_budget_cap"]
    label = f"AWS: at the budget cap ({cap['max_interruptions']} interruptions)"
    print(f"{label:<48} {cap['history_events']:.0f} of 25,000 events")
    worst = aws["worst_case_at_the_cap"]
    label = f"AWS: worst, {worst['resumes']} resumes to deadlines ({worst['boot_polls']} polls)"
    print(f"{label:<48} {worst['history_events']} of 25,000 events")
    for name, pair in results["environment_install_vs_restore"].items():
        label = f"environment {name}: install / restore"
        print(
            f"{label:<48} {pair['install_seconds_median']:.2f} s / "
            f"{pair['restore_seconds_median']:.2f} s "
            f"(x{pair['install_to_restore_ratio']:.1f})"
        )
    print_on_demand_figures(on_demand)
    print_sweep_figures(sweep)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
