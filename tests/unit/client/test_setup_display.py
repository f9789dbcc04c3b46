"""`runctl status` and `runs show` say how each attempt's environment was made, and its GPU."""

from __future__ import annotations

import pytest

from lambdas.models.run_record import Attempt, RunRecord
from runctl.client.client import RunState
from runctl.client.formatting import describe_environment, describe_gpu
from runctl.client.reading import RunDetails
from runctl.render import details_view, print_state
from tests.unit.client.conftest import running_record

INSTALLED = {"action": "installed", "seconds": 38.2, "installer": "uv", "cache_key": "ab"}
RESTORED = {"action": "restored", "seconds": 1.234, "installer": "pip", "cache_key": "ab"}
GPU = {"driver_version": "570.86.15", "cuda_version": "12.8", "gpus": ["NVIDIA A10G"] * 4}


def _record() -> RunRecord:
    return running_record(
        Attempt(number=1, instance_type="g5.xlarge", started_at="2026-12-03T10:00:00"),
        Attempt(number=2, instance_type="g5.xlarge", started_at="2026-12-03T10:03:00"),
        setup={"1": {"environment": INSTALLED, "gpu": GPU}, "2": {"environment": RESTORED}},
    )


@pytest.mark.parametrize(
    ("phase", "text"),
    [
        (INSTALLED, "installed in 38.2 s (uv)"),
        (RESTORED, "restored in 1.2 s (pip)"),
        (
            {"action": "installed", "seconds": 754.0, "installer": "pip"},
            "installed in 12m34s (pip)",
        ),
        ({"action": "none", "seconds": 0}, "image's Python (no requirements.txt)"),
        (
            {
                "action": "container",
                "image": "r/train:v3",
                "digest": "sha256:" + "0a" * 32,
                "pull_seconds": 41.04,
                "pulled": True,
            },
            "container r/train:v3 (sha256:0a0a0a0a0a0a), pulled in 41.0 s",
        ),
        (
            {
                "action": "container",
                "image": "r/train:v3",
                "digest": "sha256:" + "0a" * 32,
                "pull_seconds": 0,
                "pulled": False,
            },
            "container r/train:v3 (sha256:0a0a0a0a0a0a), on the instance",
        ),
        ({"action": "container", "image": "r/train:v3"}, "container r/train:v3, not ready"),
        (None, "-"),
    ],
)
def test_an_environment_phase_reads_as_what_was_done_and_how_long_it_took(phase, text):
    assert describe_environment(phase) == text


def test_gpus_of_one_kind_are_counted():
    assert describe_gpu(GPU) == "4x NVIDIA A10G, driver 570.86.15, CUDA 12.8"
    assert describe_gpu({"driver_version": "1", "gpus": []}) == "none, driver 1"


def test_status_shows_the_current_attempts_environment(shown):
    print_state(RunState("run-1", _record(), "RUNNING"))

    assert "  environment: restored in 1.2 s (pip)" in shown.export_text().splitlines()


def test_runs_show_lists_each_attempts_environment(shown):
    record = _record()
    shown.print(details_view(RunDetails(record=record, cost=None, metrics={})))

    text = shown.export_text()
    assert "installed in 38.2 s (uv)" in text
    assert "restored in 1.2 s (pip)" in text
