"""`submit` and `local run` take the same run flags, so a user changes one word to move."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.main import get_command
from typer.testing import CliRunner

from runctl.cli import app
from runctl.cli_options import RUN_FLAG_NAMES, request_from_flags, run_options, sweep_options
from runctl.run_request import RunRequest
from runctl.sweeps import SweepOptions


def _params(*path: str) -> dict[str, tuple[str, ...]]:
    command = get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {param.name: tuple(param.opts) + tuple(param.secondary_opts) for param in command.params}


def test_submit_and_local_run_share_every_run_flag():
    submit = _params("submit")
    local_run = _params("local", "run")

    shared = {"script", "script_args", *RUN_FLAG_NAMES}
    assert {name: submit[name] for name in shared} == {name: local_run[name] for name in shared}
    assert "--hp" in submit["hp"]
    assert submit["spot"] == ("--spot", "--on-demand")


def test_flags_become_a_typed_request():
    request = request_from_flags(
        script=Path("train.py"),
        script_args=["--fast"],
        hp=["lr=0.01", "batch=64", "shuffle=true", "name=resnet"],
        experiment="tuning",
        instance_type=["g5.xlarge"],
        spot=False,
        data=["s3://bucket/data/"],
        max_runtime="6h",
        project_dir=None,
        hyperparameters_as_args=None,
    )

    assert request.hyperparameters == {"lr": 0.01, "batch": 64, "shuffle": True, "name": "resnet"}
    assert request.market == "on-demand"
    assert request.instance_types == ("g5.xlarge",)
    assert request.args == ("--fast",)


def test_flags_not_given_stay_unset_so_the_config_can_fill_them():
    request = request_from_flags(Path("t.py"), None, None, None, None, None, None, None, None, None)
    assert request == RunRequest(Path("t.py"))


def test_a_decorated_command_gets_one_request_and_keeps_its_own_options(tmp_path):
    # Given a command using the shared flags plus one of its own
    seen = {}
    sweep = typer.Typer()

    @sweep.command()
    @run_options
    def run(request: RunRequest, parallel: int = 1) -> None:
        seen.update(request=request, parallel=parallel)

    result = CliRunner().invoke(
        sweep, ["train.py", "--hp", "lr=0.1", "--parallel", "3", "--on-demand", "--", "-x"]
    )

    assert result.exit_code == 0, result.output
    assert seen["parallel"] == 3
    assert seen["request"].hyperparameters == {"lr": 0.1}
    assert seen["request"].market == "on-demand"
    assert seen["request"].args == ("-x",)


def test_sweep_and_local_sweep_take_the_same_flags_and_submits_run_flags():
    sweep = _params("sweep")
    local_sweep = _params("local", "sweep")
    submit = _params("submit")

    assert sweep.keys() - {"wait"} == local_sweep.keys()
    assert {name: sweep[name] for name in local_sweep} == local_sweep
    shared = {"script", "script_args", *RUN_FLAG_NAMES}
    assert {name: sweep[name] for name in shared} == {name: submit[name] for name in shared}
    assert sweep["grid"] == ("--grid",)
    assert sweep["tolerate_failures"] == ("--tolerate-failures",)


def test_a_command_with_run_and_sweep_options_gets_a_request_and_typed_sweep_options():
    seen = {}
    cli = typer.Typer()

    @cli.command()
    @run_options
    @sweep_options
    def sweep(request: RunRequest, sweep: SweepOptions, wait: bool = False) -> None:
        seen.update(request=request, sweep=sweep, wait=wait)

    result = CliRunner().invoke(
        cli,
        ["train.py", "--hp", "steps=5", "--grid", "lr=0.1,0.2", "--grid", "batch=8",
         "--sample", "wd=uniform:0:1", "--random", "4", "--seed", "9", "--max-parallel", "3",
         "--objective", "loss:min", "--tolerate-failures", "12.5", "--stop-on-failure",
         "--wait", "--", "--fast"],
    )  # fmt: skip

    assert result.exit_code == 0, result.output
    assert seen["request"].hyperparameters == {"steps": 5}
    assert seen["request"].args == ("--fast",)
    assert seen["wait"] is True
    assert seen["sweep"] == SweepOptions(
        grid=("lr=0.1,0.2", "batch=8"),
        samples=("wd=uniform:0:1",),
        random=4,
        seed=9,
        max_parallel=3,
        objective="loss:min",
        tolerated_failure_percentage=12.5,
        stop_on_failure=True,
    )
