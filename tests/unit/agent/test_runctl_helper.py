"""runctl_helper, the scripts' helper: metric lines the agent reads, the contract's paths, SIGTERM,
and how it reaches the script (its PYTHONPATH on the instance, the agent's zip, pip installs)."""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import signal
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy
import pytest

from instance_agent.metrics import numeric_values, parse_metric_line
from instance_agent.script import SCRIPT_PATH_DIR, build_env
from runctl.local.deploy import agent_zip

REPO_ROOT = Path(__file__).resolve().parents[3]
HELPER = SCRIPT_PATH_DIR / "runctl_helper.py"


@pytest.fixture
def helper() -> Iterator[ModuleType]:
    """A fresh copy of the module (its SIGTERM state starts clean); the handler is put back."""
    spec = importlib.util.spec_from_file_location("runctl_helper", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = signal.getsignal(signal.SIGTERM)
    yield module
    signal.signal(signal.SIGTERM, before)


def test_a_metric_line_is_read_by_the_agent_as_the_values_given(helper, capsys):
    helper.metric(
        30, loss=0.25, acc=numpy.float32(0.5), phase="train", best=True, lr=float("nan"), gap=None
    )

    line = capsys.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1
    parsed = parse_metric_line(line.rstrip("\n"))
    assert parsed == {
        "step": 30,
        "loss": 0.25,
        "acc": 0.5,
        "phase": "train",
        "best": True,
        "lr": None,
        "gap": None,
    }
    assert numeric_values(parsed) == {"step": 30, "loss": 0.25, "acc": 0.5}


def test_a_metric_line_is_strict_json_even_for_infinities(helper, capsys):
    helper.metric(step=1, up=float("inf"), down=float("-inf"))

    body = capsys.readouterr().out.removeprefix("RUNCTL_METRIC ")

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    assert json.loads(body, parse_constant=refuse) == {"step": 1, "up": None, "down": None}


def test_without_a_step_the_line_has_only_the_values_and_others_become_text(helper, capsys):
    helper.metric(loss=1, shape=(2, 3))

    line = capsys.readouterr().out.rstrip("\n")
    assert parse_metric_line(line) == {"loss": 1, "shape": "(2, 3)"}


def test_the_contract_variables_give_the_paths_and_run_facts(helper, tmp_path, monkeypatch):
    for name in ("CHECKPOINT", "OUTPUT", "DATA"):
        monkeypatch.setenv(f"RUNCTL_{name}_DIR", str(tmp_path / name.lower() / "deep"))
    monkeypatch.setenv("RUNCTL_RESUME_FROM", str(tmp_path / "checkpoint" / "checkpoint-40"))
    monkeypatch.setenv("RUNCTL_RUN_ID", "run-1")
    monkeypatch.setenv("RUNCTL_ATTEMPT", "3")
    monkeypatch.setenv("RUNCTL_HPARAMS", '{"lr": 0.1, "steps": 40}')

    paths = [helper.checkpoint_dir(), helper.output_dir(), helper.data_dir()]

    assert paths == [tmp_path / name / "deep" for name in ("checkpoint", "output", "data")]
    assert all(path.is_dir() for path in paths)
    assert helper.resume_from() == tmp_path / "checkpoint" / "checkpoint-40"
    assert (helper.run_id(), helper.attempt()) == ("run-1", 3)
    assert helper.hparams() == {"lr": 0.1, "steps": 40}


def test_without_runctl_the_folders_are_made_here_and_nothing_resumes(
    helper, tmp_path, monkeypatch
):
    for name in ("CHECKPOINT_DIR", "OUTPUT_DIR", "DATA_DIR", "RESUME_FROM", "RUN_ID", "ATTEMPT"):
        monkeypatch.delenv(f"RUNCTL_{name}", raising=False)
    monkeypatch.delenv("RUNCTL_HPARAMS", raising=False)
    monkeypatch.chdir(tmp_path)

    paths = [helper.checkpoint_dir(), helper.output_dir(), helper.data_dir()]

    assert [path.resolve() for path in paths] == [
        tmp_path / "checkpoints",
        tmp_path / "output",
        tmp_path / "data",
    ]
    assert all(path.is_dir() for path in paths)
    assert helper.resume_from() is None
    assert (helper.run_id(), helper.attempt(), helper.hparams()) == (None, 1, {})


def test_after_watch_sigterm_a_sigterm_is_recorded_and_the_process_lives_on(helper):
    earlier: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: earlier.append(signum))
    helper.watch_sigterm()
    helper.watch_sigterm()  # a second call must not chain the handler to itself
    assert helper.stop_requested() is False

    os.kill(os.getpid(), signal.SIGTERM)

    assert helper.stop_requested() is True
    assert earlier == [signal.SIGTERM]  # the handler installed before is still called, once


def test_it_imports_with_the_standard_library_alone():
    # -I -S: no PYTHONPATH, no site-packages; only the helper's folder is added.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import runctl_helper; "
        "runctl_helper.metric(1, loss=0.5); "
        "print(sorted({'torch', 'numpy', 'transformers', 'lightning'} & set(sys.modules)))"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(SCRIPT_PATH_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ['RUNCTL_METRIC {"step": 1, "loss": 0.5}', "[]"]


def test_the_script_env_has_the_helper_last_on_pythonpath(make_spec, workdirs):
    spec = make_spec(environment={"PYTHONPATH": "/opt/mine:/opt/theirs"})

    env = build_env({"PYTHONPATH": "/agent/own"}, spec, "run-1", 1, workdirs)
    bare = build_env({}, make_spec(), "run-1", 1, workdirs)

    assert env["PYTHONPATH"] == f"/opt/mine:/opt/theirs:{SCRIPT_PATH_DIR}"
    assert bare["PYTHONPATH"] == str(SCRIPT_PATH_DIR)


@pytest.mark.parametrize("own_helper", [False, True])
def test_a_script_started_with_that_env_imports_the_helper_unless_it_has_its_own(
    make_spec, workdirs, tmp_path, own_helper
):
    mine = tmp_path / "mine"
    mine.mkdir()
    if own_helper:
        (mine / "runctl_helper.py").write_text("")
    spec = make_spec(environment={"PYTHONPATH": str(mine)})
    env = build_env({"PATH": os.environ["PATH"]}, spec, "run-1", 1, workdirs)
    code = "import runctl_helper; print(runctl_helper.__file__)"

    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    expected = mine / "runctl_helper.py" if own_helper else HELPER
    assert Path(done.stdout.strip()) == expected


def test_the_agent_zip_carries_the_helper_in_its_folder_and_nothing_else_there():
    # Nothing else: an editable install's runctl.egg-info would land there without pyproject's
    # tool.distutils.egg_info setting.
    names = zipfile.ZipFile(io.BytesIO(agent_zip())).namelist()

    assert [name for name in names if name.startswith("script_path/")] == [
        "script_path/runctl_helper.py"
    ]


def test_pip_installs_the_helper_as_a_top_level_module_from_the_agents_folder():
    setuptools = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]

    assert "runctl_helper" in setuptools["py-modules"]
    assert REPO_ROOT / setuptools["package-dir"][""] / "runctl_helper.py" == HELPER


def test_every_call_the_readme_names_exists(helper):
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### The helper (runctl_helper)") :]
    section = section[: section.index("\n## ")]
    named = set(re.findall(r"runctl_helper\.(\w+)", section))
    named |= set(re.findall(r"^\| `(\w+)\(", section, re.M))
    named |= set(re.findall(r"`, `(\w+)\(", section))

    assert {"metric", "checkpoint_dir", "hf_callback", "lightning_callback"} <= named
    assert sorted(name for name in named if not callable(getattr(helper, name, None))) == []
