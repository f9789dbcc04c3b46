"""SweepSpec validation and its expansion into runs: grid order, seeded random draws, run ids,
caps, and errors that name the field."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any

import pytest

from lambdas.errors import SweepSpecInvalid
from lambdas.logic.sweeps import (
    MAX_PLAN_BYTES,
    child_run_id,
    parse_sweep_spec,
    plan_sweep,
    run_spec_for,
    sweep_points,
)
from lambdas.models.run_spec import RunSpec
from lambdas.models.sweep_spec import MAX_SWEEP_ID_LENGTH, MAX_SWEEP_RUNS, SweepSpec
from lambdas.models.sweep_summary import SweepStart

BASE = {
    "code": {"s3_uri": "s3://runctl-bucket/code/" + "a" * 64 + ".tar.gz"},
    "entry_point": "train.py",
    "hyperparameters": {"steps": 20, "lr": 0.5},
}


def sweep(**fields: Any) -> dict[str, Any]:
    return {"base_spec": BASE, **fields}


def invalid(raw: dict[str, Any]) -> str:
    with pytest.raises(SweepSpecInvalid) as caught:
        parse_sweep_spec(raw)
    return str(caught.value)


# ------------------------------------------------------------------------------------ grid


def test_grid_is_the_cross_product_with_the_first_name_slowest():
    spec = parse_sweep_spec(sweep(grid={"lr": [0.1, 0.01], "batch": [32, 64, 128]}))

    points = sweep_points(spec)

    assert points == [
        {"lr": lr, "batch": batch} for lr, batch in itertools.product([0.1, 0.01], [32, 64, 128])
    ]
    assert spec.run_count == 6


def test_each_run_gets_an_id_from_the_sweep_id_and_its_index():
    plan = plan_sweep(parse_sweep_spec(sweep(grid={"lr": [0.1, 0.01]})), "sweep-a")

    assert [run.run_id for run in plan.runs] == ["sweep-a-r000", "sweep-a-r001"]
    assert child_run_id("sweep-a", 42) == "sweep-a-r042"


def test_a_runs_spec_is_the_base_with_its_swept_values_over_the_base_hyperparameters():
    plan = plan_sweep(parse_sweep_spec(sweep(grid={"lr": [0.1], "batch": [8]})), "sweep-a")

    spec = RunSpec.model_validate(run_spec_for(plan.base_spec, plan.runs[0].swept))

    assert spec.hyperparameters == {"steps": 20, "lr": 0.1, "batch": 8}
    assert spec.entry_point == "train.py"


def test_runs_of_a_sweep_share_an_experiment_named_after_it_unless_the_base_names_one():
    unnamed = plan_sweep(parse_sweep_spec(sweep(grid={"lr": [0.1]})), "sweep-a")
    named_base = {**BASE, "experiment": "resnet"}
    named = plan_sweep(parse_sweep_spec({"base_spec": named_base, "grid": {"lr": [0.1]}}), "s")
    # What the CLI sends when --experiment was not given.
    null_base = {**BASE, "experiment": None}
    null = plan_sweep(parse_sweep_spec({"base_spec": null_base, "grid": {"lr": [0.1]}}), "s-b")

    assert unnamed.base_spec["experiment"] == "sweep-a"
    assert named.base_spec["experiment"] == "resnet"
    assert null.base_spec["experiment"] == "s-b"


def test_booleans_and_numbers_equal_in_python_are_different_grid_values():
    spec = parse_sweep_spec(sweep(grid={"flag": [True, 1, 1.0]}))

    assert [point["flag"] for point in sweep_points(spec)] == [True, 1, 1.0]


def test_a_value_listed_twice_is_refused_with_the_field():
    message = invalid(sweep(grid={"lr": [0.1, 0.1]}))

    assert "grid.lr" in message
    assert "listed twice" in message


# ------------------------------------------------------------------------------------ random


SPACE = {
    "lr": {"log_uniform": [1e-4, 1e-1]},
    "dropout": {"uniform": [0.0, 0.5]},
    "layers": {"int_uniform": [2, 6]},
    "optimizer": {"choice": ["adam", "sgd"]},
}


def test_random_draws_are_the_same_for_the_same_seed_and_differ_for_another():
    first = sweep_points(parse_sweep_spec(sweep(random={"samples": 8, "seed": 7, "space": SPACE})))
    again = sweep_points(parse_sweep_spec(sweep(random={"samples": 8, "seed": 7, "space": SPACE})))
    other = sweep_points(parse_sweep_spec(sweep(random={"samples": 8, "seed": 8, "space": SPACE})))

    assert first == again
    assert first != other


def test_random_draws_do_not_depend_on_the_order_the_space_is_written_in():
    reordered = dict(reversed(list(SPACE.items())))

    written = sweep_points(parse_sweep_spec(sweep(random={"samples": 5, "space": SPACE})))
    reversed_ = sweep_points(parse_sweep_spec(sweep(random={"samples": 5, "space": reordered})))

    assert written == reversed_


def test_random_draws_stay_in_their_ranges_and_types():
    points = sweep_points(parse_sweep_spec(sweep(random={"samples": 200, "space": SPACE})))

    for point in points:
        assert 1e-4 <= point["lr"] <= 1e-1
        assert 0.0 <= point["dropout"] <= 0.5
        assert isinstance(point["layers"], int) and 2 <= point["layers"] <= 6
        assert point["optimizer"] in {"adam", "sgd"}
    # log-uniform: about as many draws below the geometric middle (~3.2e-3) as above it
    below = sum(point["lr"] < math.sqrt(1e-4 * 1e-1) for point in points)
    assert 60 < below < 140


def test_random_floats_keep_six_significant_digits_through_json():
    points = sweep_points(parse_sweep_spec(sweep(random={"samples": 20, "space": SPACE})))

    for point in points:
        assert json.loads(json.dumps(point["dropout"])) == float(f"{point['dropout']:.6g}")


def test_a_space_of_choices_only_gives_distinct_combinations():
    space = {"lr": {"choice": [0.1, 0.01, 0.001]}, "batch": {"choice": [32, 64, 128]}}

    points = sweep_points(parse_sweep_spec(sweep(random={"samples": 9, "seed": 3, "space": space})))

    assert len({json.dumps(point, sort_keys=True) for point in points}) == 9


def test_more_samples_than_distinct_choices_is_refused():
    space = {"lr": {"choice": [0.1, 0.01]}}

    message = invalid(sweep(random={"samples": 3, "space": space}))

    assert "only 2 distinct combinations" in message


def test_grid_and_random_give_every_grid_point_with_every_draw():
    spec = parse_sweep_spec(
        sweep(grid={"batch": [32, 64]}, random={"samples": 3, "seed": 1, "space": SPACE})
    )

    points = sweep_points(spec)

    assert len(points) == 6 == spec.run_count
    draws = [{key: value for key, value in point.items() if key != "batch"} for point in points]
    assert draws[:3] == draws[3:]
    assert [point["batch"] for point in points] == [32, 32, 32, 64, 64, 64]


def test_a_name_in_both_grid_and_random_is_refused():
    message = invalid(sweep(grid={"lr": [0.1]}, random={"samples": 2, "space": SPACE}))

    assert "['lr'] are in both grid and random.space" in message


@pytest.mark.parametrize(
    ("distribution", "problem"),
    [
        ({"uniform": [1.0, 0.5]}, "finite low < high"),
        ({"log_uniform": [0.0, 1.0]}, "0 < low < high"),
        ({"int_uniform": [5, 2]}, "low <= high"),
        ({"normal": [0, 1]}, 'must be one of {"uniform"'),
        ({"uniform": [0, 1], "choice": [1]}, 'must be one of {"uniform"'),
    ],
)
def test_a_wrong_distribution_is_refused_naming_it(distribution, problem):
    message = invalid(sweep(random={"samples": 2, "space": {"lr": distribution}}))

    assert "random.space.lr" in message
    assert problem in message


# ------------------------------------------------------------------------------------ limits


def test_a_sweep_without_grid_or_random_is_refused():
    assert "needs a grid, random samples, or both" in invalid(sweep())


def test_an_empty_value_list_is_refused_naming_the_name():
    message = invalid(sweep(grid={"lr": []}))

    assert message.startswith("SweepSpec is invalid: grid.lr:")


def test_more_runs_than_the_cap_is_refused_before_expanding():
    grid = {"a": list(range(100)), "b": list(range(100)), "c": list(range(100))}

    message = invalid(sweep(grid=grid))

    assert f"has 1000000 runs, more than the {MAX_SWEEP_RUNS}" in message


def test_the_cap_itself_is_allowed():
    spec = parse_sweep_spec(sweep(grid={"i": list(range(MAX_SWEEP_RUNS))}))

    assert len(plan_sweep(spec, "sweep-a").runs) == MAX_SWEEP_RUNS


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"max_parallel": 0}, "max_parallel"),
        ({"max_parallel": 41}, "max_parallel"),
        ({"tolerated_failure_percentage": 101}, "tolerated_failure_percentage"),
        ({"objective": "loss"}, "objective"),
        ({"objective": "loss:lowest"}, "objective"),
        ({"grid": {"bad name": [1]}}, "grid.bad name.[key]"),
        ({"parallel": 2}, "parallel"),
        ({"random": {"samples": 0, "space": SPACE}}, "random.samples"),
        ({"random": {"samples": 2, "space": SPACE, "sead": 1}}, "random.sead"),
    ],
)
def test_wrong_fields_are_refused_naming_the_field(fields, field):
    base = {"grid": {"lr": [0.1]}}

    message = invalid(sweep(**{**base, **fields}))

    assert f"{field}:" in message


def test_a_wrong_base_spec_names_its_field():
    message = invalid({"base_spec": {**BASE, "entry_point": "/abs.py"}, "grid": {"lr": [0.1]}})

    assert "base_spec.entry_point" in message


def test_a_value_with_a_nul_is_refused_naming_its_place():
    message = invalid(sweep(grid={"tag": ["ok", "bad\x00"]}))

    assert "grid.tag.1: must not contain a NUL character" in message


def test_a_sweep_id_too_long_for_its_run_ids_is_refused():
    spec = parse_sweep_spec(sweep(grid={"lr": [0.1]}))

    plan_sweep(spec, "s" * MAX_SWEEP_ID_LENGTH)
    with pytest.raises(SweepSpecInvalid, match="sweep id"):
        plan_sweep(spec, "s" * (MAX_SWEEP_ID_LENGTH + 1))


def test_a_plan_too_large_is_refused():
    # Each 1,100-byte value is in 10 runs' plan entries: ~1.1 MiB of plan from a ~110 KiB spec.
    long_values = ["x" * 1100 + str(index) for index in range(100)]
    spec = parse_sweep_spec(sweep(grid={"tag": long_values, "seed": list(range(10))}))

    with pytest.raises(SweepSpecInvalid) as caught:
        plan_sweep(spec, "sweep-a")

    assert f"more than the {MAX_PLAN_BYTES // 1024} KiB" in str(caught.value)


def test_the_input_must_be_an_object():
    with pytest.raises(SweepSpecInvalid, match="SweepSpec JSON object"):
        parse_sweep_spec(["not", "a", "sweep"])


def test_objective_parts():
    spec = SweepSpec.model_validate(sweep(grid={"lr": [0.1]}, objective="val/acc:max"))

    assert (spec.objective_metric, spec.objective_goal) == ("val/acc", "max")


def test_the_sweep_state_for_the_largest_sweep_holds_only_run_indices():
    # Given the largest sweep, each run with a long swept value
    values = [f"{'v' * 100}{index}" for index in range(MAX_SWEEP_RUNS)]
    plan = plan_sweep(parse_sweep_spec(sweep(grid={"tag": values})), "sweep-a")

    # When ExpandSweep makes the Sweep's state from it
    state = SweepStart.of(plan)

    # Then the state has no run's values (those stay in plan.json) and stays a few KiB
    assert state.indices == list(range(MAX_SWEEP_RUNS))
    assert len(state.model_dump_json()) < 8 * 1024 < len(plan.model_dump_json())
