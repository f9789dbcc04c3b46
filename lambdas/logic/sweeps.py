"""ExpandSweep and PrepareSweepRun: a SweepSpec becomes a list of runs, each with its run id and
the values it tries; each run's RunSpec is the base spec with those values merged in.

`plan_sweep` is pure: the client calls it too, so a bad sweep is refused before anything starts.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from typing import Any

from pydantic import ValidationError

from lambdas.env import LambdaEnv
from lambdas.errors import RunSpecInvalid, SweepSpecInvalid
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.validation import validate_run
from lambdas.models.bounds import json_size
from lambdas.models.run_spec import HyperparameterValue, RunSpec, validation_problems
from lambdas.models.steps import ValidateInput
from lambdas.models.sweep_spec import (
    MAX_SWEEP_ID_LENGTH,
    RUN_INDEX_WIDTH,
    Choice,
    IntUniform,
    LogUniform,
    RandomSearch,
    SweepPlan,
    SweepRun,
    SweepSpec,
    Uniform,
)
from lambdas.models.sweep_summary import (
    ExpandSweepInput,
    PreparedRun,
    PrepareSweepRunInput,
    SweepStart,
)

SWEEP_ID_PATTERN = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9_-]{{0,{MAX_SWEEP_ID_LENGTH - 1}}}\Z")
# plan.json is not in the Sweep's state (only the run indices are), but every PrepareSweepRun
# and SummarizeSweep reads it whole: 1,000 runs of a few swept values are ~100 KiB.
MAX_PLAN_BYTES = 1024 * 1024
# Random floats keep 6 significant digits: readable in tables, and the same after JSON.
_SIGNIFICANT_DIGITS = 6

Point = dict[str, HyperparameterValue]


def parse_sweep_spec(raw: Any) -> SweepSpec:
    """The SweepSpec, or SweepSpecInvalid naming each wrong field."""
    if not isinstance(raw, dict):
        raise SweepSpecInvalid("the sweep's input must be a SweepSpec JSON object")
    try:
        return SweepSpec.model_validate(raw)
    except ValidationError as error:
        raise SweepSpecInvalid(f"SweepSpec is invalid: {describe_problems(error)}") from error


def describe_problems(error: ValidationError) -> str:
    """'grid.lr: List should have at least 1 item; random.samples: ...' (the field, then what)."""
    lines = []
    for problem in error.errors(include_url=False):
        field = ".".join(str(part) for part in problem["loc"]) or "(SweepSpec)"
        lines.append(f"{field}: {problem['msg'].removeprefix('Value error, ')}")
    return "; ".join(lines)


def child_run_id(sweep_id: str, index: int) -> str:
    """Fixed by the sweep and the index: a retried start names the same execution."""
    return f"{sweep_id}-r{index:0{RUN_INDEX_WIDTH}d}"


def sweep_points(spec: SweepSpec) -> list[Point]:
    """The values of each run, in run order: grid points (first name slowest), each combined
    with every random draw."""
    names = list(spec.grid)
    grid_points = [
        dict(zip(names, values, strict=True)) for values in itertools.product(*spec.grid.values())
    ]
    draws = random_draws(spec.random) if spec.random else [{}]
    return [{**point, **draw} for point in grid_points for draw in draws]


def random_draws(search: RandomSearch) -> list[Point]:
    """`search.samples` draws, the same for the same seed. Names are drawn in sorted order, so
    the order they are written in does not change the draws."""
    generator = random.Random(search.seed)  # noqa: S311 - reproducible sampling, not secrets
    names = sorted(search.space)
    if search.only_choices:
        return _distinct_choices(search, names, generator)
    return [
        {name: _draw(search.space[name], generator) for name in names}
        for _ in range(search.samples)
    ]


def _distinct_choices(
    search: RandomSearch, names: list[str], generator: random.Random
) -> list[Point]:
    # Number the combinations (mixed radix over the choice lists) and sample the numbers.
    choices = [search.space[name] for name in names]
    lists = [item.choice for item in choices if isinstance(item, Choice)]
    picks = generator.sample(range(math.prod(len(values) for values in lists)), search.samples)
    draws = []
    for pick in picks:
        point: Point = {}
        for name, values in zip(reversed(names), reversed(lists), strict=True):
            pick, position = divmod(pick, len(values))
            point[name] = values[position]
        draws.append({name: point[name] for name in names})
    return draws


def _draw(
    distribution: Uniform | LogUniform | IntUniform | Choice, generator: random.Random
) -> Any:
    if isinstance(distribution, Uniform):
        low, high = distribution.uniform
        return _rounded(generator.uniform(low, high), low, high)
    if isinstance(distribution, LogUniform):
        low, high = distribution.log_uniform
        value = math.exp(generator.uniform(math.log(low), math.log(high)))
        return _rounded(value, low, high)
    if isinstance(distribution, IntUniform):
        return generator.randint(*distribution.int_uniform)
    return generator.choice(distribution.choice)


def _rounded(value: float, low: float, high: float) -> float:
    return min(max(float(f"{value:.{_SIGNIFICANT_DIGITS}g}"), low), high)


def run_spec_for(base_spec: dict[str, Any], swept: Point) -> dict[str, Any]:
    """The run's RunSpec: the base spec with the swept values over its hyperparameters."""
    return {**base_spec, "hyperparameters": {**base_spec.get("hyperparameters", {}), **swept}}


def plan_sweep(spec: SweepSpec, sweep_id: str, execution_arn: str = "") -> SweepPlan:
    """Every run of the sweep; SweepSpecInvalid when the sweep id or the plan's size is wrong."""
    if not SWEEP_ID_PATTERN.match(sweep_id):
        raise SweepSpecInvalid(
            f"sweep id (execution name) {sweep_id!r} must be 1-{MAX_SWEEP_ID_LENGTH} letters, "
            "digits, '-' or '_' (its runs are named <sweep id>-r000, ...)"
        )
    base_spec = spec.base_spec.model_dump(mode="json", exclude_unset=True)
    # The runs of one sweep are one experiment unless the base spec names another (the client
    # sends `experiment: null` when none was given).
    if base_spec.get("experiment") is None:
        base_spec["experiment"] = sweep_id
    runs = [
        SweepRun(index=index, run_id=child_run_id(sweep_id, index), swept=swept)
        for index, swept in enumerate(sweep_points(spec))
    ]
    _check_run_specs(base_spec, runs)
    plan = SweepPlan(
        sweep_id=sweep_id,
        execution_arn=execution_arn,
        max_parallel=spec.max_parallel,
        objective=spec.objective,
        tolerated_failure_percentage=spec.tolerated_failure_percentage,
        stop_on_failure=spec.stop_on_failure,
        total_runs=len(runs),
        base_spec=base_spec,
        runs=runs,
    )
    size = len(plan.model_dump_json())
    if size > MAX_PLAN_BYTES:
        raise SweepSpecInvalid(
            f"the sweep's plan is {size // 1024} KiB, more than the {MAX_PLAN_BYTES // 1024} KiB "
            "a sweep's plan may have: fewer runs, or shorter hyperparameter values"
        )
    return plan


def _check_run_specs(base_spec: dict[str, Any], runs: list[SweepRun]) -> None:
    """SweepSpecInvalid, naming the field, when some run's RunSpec (the base with its swept
    values) is not one. The base is a RunSpec and each swept value was checked as RunSpec checks
    a hyperparameter, so only the merged hyperparameters' count and size can make a run's spec
    invalid, and both checks grow with them: the runs with the most names and with the largest
    hyperparameters stand for all."""
    base_values = base_spec.get("hyperparameters", {})
    merged = [{**base_values, **run.swept} for run in runs]
    most = max(range(len(runs)), key=lambda index: len(merged[index]))
    largest = max(range(len(runs)), key=lambda index: json_size(merged[index]))
    for index in dict.fromkeys((most, largest)):
        try:
            RunSpec.model_validate(run_spec_for(base_spec, runs[index].swept))
        except ValidationError as error:
            problems = "; ".join(validation_problems(error, under="base_spec"))
            raise SweepSpecInvalid(
                f"{problems} (run {index}: the base spec with the values the sweep gives it)"
            ) from error


def expand_sweep(
    request: ExpandSweepInput, env: LambdaEnv, s3: Any, ec2: Any, files: SweepFiles
) -> SweepStart:
    """ExpandSweep: the plan, written to sweeps/<id>/plan.json; the Sweep's state gets only the
    run indices (`SweepStart`), so it does not grow with the runs' inputs. The first run goes
    through ValidateRun's own checks (its code and data are in S3), so a sweep that cannot
    start fails here, before any run."""
    spec = parse_sweep_spec(request.spec)
    plan = plan_sweep(spec, request.sweep_id, request.execution_arn)
    first = plan.runs[0]
    try:
        validate_run(
            ValidateInput(
                spec=run_spec_for(plan.base_spec, first.swept),
                run_id=first.run_id,
                execution_arn=request.execution_arn,
            ),
            env,
            s3,
            ec2,
        )
    except RunSpecInvalid as error:
        raise SweepSpecInvalid(f"base_spec: {error}") from error
    files.put_plan(plan, request.spec)
    return SweepStart.of(plan)


def prepare_sweep_run(request: PrepareSweepRunInput, files: SweepFiles) -> PreparedRun:
    """PrepareSweepRun: the run's RunSpec from the plan, unless the sweep was stopped (then it
    never starts)."""
    run_id = child_run_id(request.sweep_id, request.index)
    if files.stop(request.sweep_id) is not None:
        return PreparedRun(start=False, run_id=run_id)
    plan = files.plan(request.sweep_id)
    run = plan.runs[request.index]
    return PreparedRun(start=True, run_id=run.run_id, spec=run_spec_for(plan.base_spec, run.swept))
