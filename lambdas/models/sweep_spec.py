"""The SweepSpec: many runs of one base RunSpec over a grid and/or random samples of
hyperparameters; and the SweepPlan, the runs it expands to (lambdas/logic/sweeps.py).

A sweep's runs are the grid's points (the cross product of its value lists, the first name
varying slowest), or `random.samples` draws from `random.space`, or both: every grid point
combined with every draw. When every entry of the space is a `choice`, the draws are distinct
combinations (as scikit-learn's ParameterSampler does for lists), so `--random 4` over a 3x3 grid
picks 4 of its 9 points.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from lambdas.models.bounds import json_size
from lambdas.models.run_spec import HPARAM_NAME_PATTERN, HyperparameterValue, RunSpec

# Each run adds 15 events to the Sweep's history (Map iteration started/succeeded 2,
# PrepareSweepRun 5, StartOrSkip 2, the nested TrainRun .sync task 6), 19 when it fails
# (TrainRun caught 4, OnSweepRunFailed 5): 1,000 failing runs are 19,000 events plus retries,
# under the 25,000-event limit. The state holds only the run indices (< 4 KiB for 1,000; the runs'
# values stay in plan.json), and run ids have 3 digits (r000-r999).
MAX_SWEEP_RUNS = 1000
# An inline Map state runs at most 40 iterations at once on AWS.
MAX_PARALLEL_RUNS = 40
# Run ids are `<sweep id>-r<index>` (RunContext: at most 80 characters).
RUN_INDEX_WIDTH = 3
MAX_SWEEP_ID_LENGTH = 80 - len("-r") - RUN_INDEX_WIDTH
# The SweepSpec is the Sweep execution's input and, with the sweep id and execution ARN, the
# input of ExpandSweep: Step Functions allows 256 KiB for each. Twice a RunSpec's own bound leaves
# room for the grid and the random space, and a wide margin.
MAX_SWEEP_SPEC_JSON_BYTES = 128 * 1024
OBJECTIVE_PATTERN = re.compile(r"^(?P<metric>[A-Za-z_][A-Za-z0-9_./-]{0,127}):(?P<goal>min|max)\Z")

HyperparameterName = Annotated[str, Field(pattern=HPARAM_NAME_PATTERN)]


def _distinct(values: list[Any]) -> list[Any]:
    # JSON text, not ==: in Python True == 1 == 1.0, but they are different hyperparameters.
    seen: set[str] = set()
    for value in values:
        text = json.dumps(value)
        if text in seen:
            raise ValueError(f"value {text} is listed twice")
        seen.add(text)
    return values


ValueList = Annotated[
    list[HyperparameterValue],
    Field(min_length=1, max_length=MAX_SWEEP_RUNS),
    AfterValidator(_distinct),
]


class Uniform(BaseModel):
    """A float drawn uniformly from [low, high]."""

    model_config = ConfigDict(extra="forbid")

    uniform: tuple[float, float]

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        low, high = bounds
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError("must be [low, high] with finite low < high")
        return bounds


class LogUniform(BaseModel):
    """A float whose logarithm is uniform in [log(low), log(high)]: learning rates."""

    model_config = ConfigDict(extra="forbid")

    log_uniform: tuple[float, float]

    @field_validator("log_uniform")
    @classmethod
    def _positive_ordered(cls, bounds: tuple[float, float]) -> tuple[float, float]:
        low, high = bounds
        if not (math.isfinite(high) and 0 < low < high):
            raise ValueError("must be [low, high] with 0 < low < high")
        return bounds


class IntUniform(BaseModel):
    """An integer drawn uniformly from low..high, both included."""

    model_config = ConfigDict(extra="forbid")

    int_uniform: tuple[int, int]

    @field_validator("int_uniform")
    @classmethod
    def _ordered(cls, bounds: tuple[int, int]) -> tuple[int, int]:
        if bounds[0] > bounds[1]:
            raise ValueError("must be [low, high] with low <= high")
        return bounds


class Choice(BaseModel):
    """One of the listed values, each as likely."""

    model_config = ConfigDict(extra="forbid")

    choice: ValueList


def _distribution_kind(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        return str(next(iter(value)))
    if isinstance(value, BaseModel):
        return str(next(iter(type(value).model_fields)))
    return None


Distribution = Annotated[
    Annotated[Uniform, Tag("uniform")]
    | Annotated[LogUniform, Tag("log_uniform")]
    | Annotated[IntUniform, Tag("int_uniform")]
    | Annotated[Choice, Tag("choice")],
    Discriminator(
        _distribution_kind,
        custom_error_type="distribution",
        custom_error_message=(
            'must be one of {"uniform": [low, high]}, {"log_uniform": [low, high]}, '
            '{"int_uniform": [low, high]} or {"choice": [value, ...]}'
        ),
    ),
]


class RandomSearch(BaseModel):
    """`samples` draws from `space`, reproducible from `seed`."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(ge=1, le=MAX_SWEEP_RUNS, description="how many draws")
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="same seed, same draws")
    space: dict[HyperparameterName, Distribution] = Field(min_length=1)

    @property
    def only_choices(self) -> bool:
        return all(isinstance(item, Choice) for item in self.space.values())

    def distinct_combinations(self) -> int:
        return math.prod(
            len(item.choice) for item in self.space.values() if isinstance(item, Choice)
        )


class SweepSpec(BaseModel):
    """A hyperparameter sweep: what every run runs, which values it tries, how many at once,
    which metric picks the best run, and how many failed runs the sweep tolerates."""

    model_config = ConfigDict(extra="forbid", title="SweepSpec")

    base_spec: RunSpec = Field(
        description="every run's RunSpec; its hyperparameters are defaults the sweep overrides"
    )
    grid: dict[HyperparameterName, ValueList] = Field(
        default_factory=dict, description="name -> values; every combination is one run"
    )
    random: RandomSearch | None = Field(default=None, description="random draws (with a seed)")
    max_parallel: int = Field(
        default=4, ge=1, le=MAX_PARALLEL_RUNS, description="runs at once (at most 40)"
    )
    objective: str | None = Field(
        default=None,
        description="'metric:min' or 'metric:max': the best run has the lowest or highest "
        "final value of this metric",
    )
    tolerated_failure_percentage: float = Field(
        default=0,
        ge=0,
        le=100,
        description="the sweep succeeds when at most this share of its runs failed",
    )
    stop_on_failure: bool = Field(
        default=False,
        description="once more runs failed than tolerated, stop the running ones (gracefully) "
        "and start no more; otherwise every run goes on to its end",
    )

    @field_validator("objective")
    @classmethod
    def _objective_form(cls, value: str | None) -> str | None:
        if value is not None and not OBJECTIVE_PATTERN.match(value):
            raise ValueError("must be 'metric:min' or 'metric:max', for example 'val_loss:min'")
        return value

    @model_validator(mode="after")
    def _runs_are_well_defined(self) -> SweepSpec:
        if not self.grid and self.random is None:
            raise ValueError("a sweep needs a grid, random samples, or both")
        if self.random is not None:
            shared = sorted(set(self.grid) & set(self.random.space))
            if shared:
                raise ValueError(f"{shared} are in both grid and random.space: pick one")
            if self.random.only_choices:
                combinations = self.random.distinct_combinations()
                if self.random.samples > combinations:
                    raise ValueError(
                        f"random.samples is {self.random.samples}, but random.space has only "
                        f"{combinations} distinct combinations"
                    )
        if self.run_count > MAX_SWEEP_RUNS:
            raise ValueError(
                f"the sweep has {self.run_count} runs, more than the {MAX_SWEEP_RUNS} one sweep "
                "may have: fewer values, fewer samples, or several sweeps"
            )
        size = json_size(self.model_dump(mode="json"))
        if size > MAX_SWEEP_SPEC_JSON_BYTES:
            raise ValueError(
                f"takes {size:,} bytes as JSON, more than the {MAX_SWEEP_SPEC_JSON_BYTES:,} a "
                "SweepSpec may take (it is the Sweep execution's input): fewer or shorter values"
            )
        return self

    @property
    def run_count(self) -> int:
        points = math.prod(len(values) for values in self.grid.values())
        return points * (self.random.samples if self.random else 1)

    @property
    def objective_metric(self) -> str | None:
        return self.objective.rpartition(":")[0] if self.objective else None

    @property
    def objective_goal(self) -> Literal["min", "max"] | None:
        if self.objective is None:
            return None
        return "max" if self.objective.endswith(":max") else "min"


class SweepRun(BaseModel):
    """One run of the plan: the values the sweep chose for it (the rest come from base_spec)."""

    model_config = ConfigDict(extra="forbid")

    index: int
    run_id: str
    swept: dict[str, HyperparameterValue]


class SweepHeader(BaseModel):
    """What every step of a sweep needs to know of it (the runs themselves aside)."""

    model_config = ConfigDict(extra="ignore")

    sweep_id: str
    execution_arn: str
    max_parallel: int
    objective: str | None
    tolerated_failure_percentage: float
    stop_on_failure: bool
    total_runs: int


class SweepPlan(SweepHeader):
    """sweeps/<id>/plan.json: the sweep and each run's values (the state carries SweepStart)."""

    base_spec: dict[str, Any] = Field(description="the RunSpec each run merges its values into")
    runs: list[SweepRun]
