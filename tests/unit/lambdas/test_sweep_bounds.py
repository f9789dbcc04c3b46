"""A sweep whose runs would not be valid RunSpecs once the swept values are merged into the base
spec's hyperparameters (too many, too large), or whose SweepSpec is too large to be the Sweep's
input, is refused before any run starts, naming the field (and the run)."""

from __future__ import annotations

from typing import Any

import pytest

from lambdas.errors import SweepSpecInvalid
from lambdas.logic.sweeps import expand_sweep, parse_sweep_spec, plan_sweep
from lambdas.models.run_spec import MAX_HYPERPARAMETERS, MAX_HYPERPARAMETERS_JSON_BYTES
from lambdas.models.sweep_spec import MAX_SWEEP_SPEC_JSON_BYTES
from lambdas.models.sweep_summary import ExpandSweepInput
from runctl.specs import SpecError
from runctl.sweeps import checked_sweep
from tests.largest_payloads import strings_filling

CODE = {"s3_uri": "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"}
SWEPT = "v" * 100


def base_filling_the_cap_with(swept: dict[str, Any]) -> dict[str, Any]:
    """A base spec whose hyperparameters, with `swept` merged in, are exactly at the byte cap."""
    names = ["hp00", "hp01", "hp02"]
    values = strings_filling(
        MAX_HYPERPARAMETERS_JSON_BYTES,
        len(names),
        lambda strings: {**dict(zip(names, strings, strict=True)), **swept},
    )
    return {
        "code": CODE,
        "entry_point": "train.py",
        "hyperparameters": dict(zip(names, values, strict=True)),
    }


def test_a_sweep_whose_runs_fit_exactly_is_accepted():
    spec = parse_sweep_spec(
        {"base_spec": base_filling_the_cap_with({"lr": SWEPT}), "grid": {"lr": [SWEPT]}}
    )

    assert plan_sweep(spec, "sweep-a").total_runs == 1


def test_a_run_one_byte_over_the_hyperparameters_cap_refuses_the_sweep_naming_field_and_run():
    # Given a base spec at the cap with the first run's value, and a second run's value one
    # byte longer
    raw = {
        "base_spec": base_filling_the_cap_with({"lr": SWEPT}),
        "grid": {"lr": [SWEPT, SWEPT + "w"]},
    }

    # When the sweep is planned (the client and ExpandSweep both do)
    with pytest.raises(SweepSpecInvalid) as caught:
        plan_sweep(parse_sweep_spec(raw), "sweep-a")

    # Then it is refused, naming the base spec's field and the run that does not fit
    assert str(caught.value) == (
        f"base_spec.hyperparameters: takes {MAX_HYPERPARAMETERS_JSON_BYTES + 1:,} bytes as JSON, "
        f"more than the {MAX_HYPERPARAMETERS_JSON_BYTES:,} allowed: fewer or shorter values "
        "(run 1: the base spec with the values the sweep gives it)"
    )


def test_swept_names_that_add_up_past_the_count_cap_refuse_the_sweep():
    # Given a base with room for two more hyperparameters, and a grid of three new names
    base = {
        "code": CODE,
        "entry_point": "train.py",
        "hyperparameters": {f"h{index}": 1 for index in range(MAX_HYPERPARAMETERS - 2)},
    }
    raw = {"base_spec": base, "grid": {"a": [1], "b": [2], "c": [3]}}

    with pytest.raises(SweepSpecInvalid) as caught:
        plan_sweep(parse_sweep_spec(raw), "sweep-a")

    assert str(caught.value).startswith(
        f"base_spec.hyperparameters: Dictionary should have at most {MAX_HYPERPARAMETERS} items"
    )


def test_a_sweep_spec_larger_than_the_sweep_input_cap_is_refused():
    # Given grid values that make the SweepSpec itself too large to be the Sweep's input
    values = [f"{'x' * 1000}{index}" for index in range(MAX_SWEEP_SPEC_JSON_BYTES // 1000)]
    raw = {"base_spec": {"code": CODE, "entry_point": "train.py"}, "grid": {"tag": values}}

    with pytest.raises(SweepSpecInvalid) as caught:
        parse_sweep_spec(raw)

    assert str(caught.value).startswith("SweepSpec is invalid: (SweepSpec): takes ")
    assert f"more than the {MAX_SWEEP_SPEC_JSON_BYTES:,} a SweepSpec may take" in str(caught.value)


class RecordingFiles:
    def __init__(self) -> None:
        self.plans: list[Any] = []

    def put_plan(self, plan: Any, spec: Any) -> None:
        self.plans.append(plan)


def test_expand_sweep_refuses_before_writing_a_plan_or_asking_aws():
    raw = {
        "base_spec": base_filling_the_cap_with({"lr": SWEPT}),
        "grid": {"lr": [SWEPT, SWEPT + "w"]},
    }
    files = RecordingFiles()

    with pytest.raises(SweepSpecInvalid, match=r"^base_spec\.hyperparameters: "):
        expand_sweep(
            ExpandSweepInput(spec=raw, sweep_id="sweep-a", execution_arn="arn"),
            None,  # type: ignore[arg-type]  # never reached: no S3, EC2 or environment needed
            None,
            None,
            files,  # type: ignore[arg-type]
        )

    assert files.plans == []


def test_the_client_refuses_the_sweep_naming_the_field():
    raw = {
        "base_spec": base_filling_the_cap_with({"lr": SWEPT}),
        "grid": {"lr": [SWEPT, SWEPT + "w"]},
    }

    with pytest.raises(SpecError, match=r"^invalid sweep: base_spec\.hyperparameters: takes "):
        checked_sweep(raw, "sweep-a")
