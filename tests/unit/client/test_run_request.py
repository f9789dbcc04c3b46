"""A RunRequest becomes a checked RunPlan: .runctl.toml defaults, flags over them, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lambdas.models.run_spec import SourceInfo
from runctl.errors import ConfigError, DataFolderError, ScriptNotFound, SpecError
from runctl.run_request import RunRequest, plan_run

CODE_URI = "s3://bucket/code/" + "a" * 64 + ".tar.gz"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "train.py").write_text("print('train')\n")
    return root


def test_without_config_the_script_folder_is_the_project_and_defaults_apply(project):
    plan = plan_run(RunRequest(project / "src" / "train.py"))

    assert plan.project_root == project / "src"
    spec = plan.spec(CODE_URI, "a" * 64, None)
    assert spec.entry_point == "train.py"
    assert spec.market == "spot"
    assert spec.instance_types is None
    assert spec.experiment is None


def test_runctl_toml_sets_the_project_root_and_defaults(project):
    (project / ".runctl.toml").write_text(
        'experiment = "baseline"\n'
        'instance_types = ["g6.xlarge"]\n'
        'market = "on-demand"\n'
        'max_runtime = "2h"\n'
        'data = ["s3://datasets/imagenet/"]\n'
        "[hyperparameters]\nbatch = 64\nlr = 0.1\n"
    )

    plan = plan_run(RunRequest(project / "src" / "train.py"))
    spec = plan.spec(CODE_URI, "a" * 64, None)

    assert plan.project_root == project
    assert spec.entry_point == "src/train.py"
    assert spec.experiment == "baseline"
    assert spec.instance_types == ["g6.xlarge"]
    assert spec.market == "on-demand"
    assert spec.limits.max_runtime_seconds == 7200
    assert [(item.name, item.s3_uri) for item in spec.data] == [
        ("imagenet", "s3://datasets/imagenet/")
    ]
    assert spec.hyperparameters == {"batch": 64, "lr": 0.1}


def test_flags_override_the_config_and_hyperparameters_merge_key_by_key(project):
    (project / ".runctl.toml").write_text(
        'experiment = "baseline"\nmarket = "on-demand"\ninstance_types = ["g6.xlarge"]\n'
        "[hyperparameters]\nbatch = 64\nlr = 0.1\n"
    )
    request = RunRequest(
        project / "src" / "train.py",
        args=("--fast",),
        hyperparameters={"lr": 0.01},
        experiment="tuning",
        instance_types=("g5.xlarge", "g4dn.xlarge"),
        market="spot",
        max_runtime=900,
    )

    spec = plan_run(request).spec(CODE_URI, "a" * 64, SourceInfo(git_commit="abc1234"))

    assert spec.experiment == "tuning"
    assert spec.market == "spot"
    assert spec.instance_types == ["g5.xlarge", "g4dn.xlarge"]
    assert spec.hyperparameters == {"batch": 64, "lr": 0.01}
    assert isinstance(spec.hyperparameters["lr"], float)
    assert spec.args == ["--fast"]
    assert spec.limits.max_runtime_seconds == 900
    assert spec.source == SourceInfo(git_commit="abc1234")


def test_config_is_found_from_the_working_directory_when_not_above_the_script(
    project, tmp_path, monkeypatch
):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".runctl.toml").write_text('experiment = "from-cwd"\n')
    monkeypatch.chdir(elsewhere)

    plan = plan_run(RunRequest(project / "src" / "train.py"))

    assert plan.fields["experiment"] == "from-cwd"


def test_a_missing_script_is_named(tmp_path):
    with pytest.raises(ScriptNotFound, match=r"script not found: .*nope\.py"):
        plan_run(RunRequest(tmp_path / "nope.py"))


def test_a_folder_is_not_a_script(project):
    with pytest.raises(ScriptNotFound, match="is a folder"):
        plan_run(RunRequest(project / "src"))


def test_a_script_outside_the_project_dir_is_refused(project, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(SpecError, match="not inside the project folder"):
        plan_run(RunRequest(project / "src" / "train.py", project_dir=other))


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"instance_types": ("NOPE",)}, r"instance_types\.0"),
        ({"experiment": "has space"}, "experiment"),
        ({"max_runtime": "soon"}, "for example 6h"),
        ({"max_runtime": 5}, r"limits\.max_runtime_seconds"),
        ({"data": ("http://example.com/x",)}, "--data"),
    ],
)
def test_invalid_options_name_the_field(project, request_fields, message):
    with pytest.raises(SpecError, match=message):
        plan_run(RunRequest(project / "src" / "train.py", **request_fields))


def test_a_bad_config_value_is_an_error_naming_the_key(project):
    (project / ".runctl.toml").write_text('market = "cheap"\n')
    with pytest.raises(ConfigError, match="'market'"):
        plan_run(RunRequest(project / "src" / "train.py"))


# --- local --data folders: local mode only ---


def test_given_a_local_data_folder_when_planning_for_aws_then_it_says_to_upload_it_to_s3(
    project, tmp_path
):
    (tmp_path / "ds").mkdir()
    request = RunRequest(project / "src" / "train.py", data=(str(tmp_path / "ds"),))

    with pytest.raises(SpecError, match=r"is a local path.*upload it first.*s3://") as raised:
        plan_run(request)
    assert "\n" not in str(raised.value)


def test_given_a_missing_local_data_path_then_the_error_names_the_flag_and_path(
    project, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    request = RunRequest(project / "src" / "train.py", data=("./nope",))

    with pytest.raises(DataFolderError, match=r"^--data './nope': no such file or folder"):
        plan_run(request, local_data=True)


def test_given_local_and_s3_data_when_planned_locally_then_the_spec_takes_the_uploaded_uri(
    project, tmp_path, monkeypatch
):
    # Given a local folder and an s3:// source, in that order
    (tmp_path / "ds").mkdir()
    monkeypatch.chdir(tmp_path)
    request = RunRequest(
        project / "src" / "train.py", data=("./ds", "ref=s3://runctl-bucket/data/ref/")
    )

    # When planned for local mode, then given where the folder was uploaded
    plan = plan_run(request, local_data=True)
    uploaded = "s3://runctl-bucket/data/local/" + "b" * 64 + "/"
    spec = plan.spec(CODE_URI, "a" * 64, None, {"ds": uploaded})

    # Then the local folder is known by its name and path, and the spec keeps the order
    assert [(item.name, item.path) for item in plan.local_data] == [("ds", tmp_path / "ds")]
    assert [(item.name, item.s3_uri) for item in spec.data] == [
        ("ds", uploaded),
        ("ref", "s3://runctl-bucket/data/ref/"),
    ]


def test_given_a_local_folder_not_uploaded_then_the_spec_is_refused(project, tmp_path):
    (tmp_path / "ds").mkdir()
    plan = plan_run(
        RunRequest(project / "src" / "train.py", data=(str(tmp_path / "ds"),)), local_data=True
    )

    with pytest.raises(SpecError, match="must be uploaded before the run starts"):
        plan.spec(CODE_URI, "a" * 64, None)


def test_given_a_relative_data_path_in_runctl_toml_then_it_is_from_the_config_folder(
    project, tmp_path, monkeypatch
):
    # Given .runctl.toml naming a folder beside it, and another working directory
    (project / "datasets" / "mnist").mkdir(parents=True)
    (project / ".runctl.toml").write_text('data = ["datasets/mnist"]\n')
    monkeypatch.chdir(tmp_path)

    plan = plan_run(RunRequest(project / "src" / "train.py"), local_data=True)

    assert [(item.name, item.path) for item in plan.local_data] == [
        ("mnist", project / "datasets" / "mnist")
    ]


def test_given_a_local_folder_with_the_name_of_another_source_then_the_names_clash(
    project, tmp_path
):
    (tmp_path / "imagenet").mkdir()
    request = RunRequest(
        project / "src" / "train.py",
        data=(str(tmp_path / "imagenet"), "s3://datasets/imagenet/"),
    )

    with pytest.raises(SpecError, match="data names must be unique"):
        plan_run(request, local_data=True)
