"""Run images (issue #12): the ECR repository, the CodeBuild project and its buildspec, and who may
push, pull and build (stacks/images.py, the BuildImage grants, the instance role)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from app import build_app, cdk_json_context
from stacks.config import ConfigError, RunctlConfig
from stacks.images import BUILD_SCRIPT, CONTEXT_DIR, DOCKER_BUILD_PY, SCRIPT_DELIMITER
from tests.infra.conftest import PULL_REPOSITORY_ARN

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

PUSH_ACTIONS = {
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
}
PULL_ACTIONS = {
    "ecr:BatchGetImage",
    "ecr:GetDownloadUrlForLayer",
    "ecr:BatchCheckLayerAvailability",
}
REPOSITORY_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/runctl-images"


def _repository(synthesized):
    return synthesized.resource(synthesized.stack.images.repository)


def _project(synthesized):
    return synthesized.resource(synthesized.stack.images.project)


def _build_spec(synthesized):
    return yaml.safe_load(_project(synthesized)["Properties"]["Source"]["BuildSpec"])


def _commands(synthesized):
    spec = _build_spec(synthesized)
    return [command for phase in spec["phases"].values() for command in phase["commands"]]


def _get_att(synthesized, construct, attribute="Arn"):
    return {"Fn::GetAtt": [synthesized.logical_id(construct), attribute]}


def _statements_with(synthesized, role, prefix):
    return [
        statement
        for statement in synthesized.role_statements(role)
        if any(action.startswith(prefix) for action in synthesized.listed(statement["Action"]))
    ]


# --- the repository ---------------------------------------------------------------------------


def test_repository_scans_on_push_keeps_tags_immutable_and_encrypts_explicitly(synthesized):
    properties = _repository(synthesized)["Properties"]

    assert properties["ImageScanningConfiguration"] == {"ScanOnPush": True}
    # Tags are content hashes: a tag that exists was built from exactly those inputs.
    assert properties["ImageTagMutability"] == "IMMUTABLE"
    assert properties["EncryptionConfiguration"] == {"EncryptionType": "AES256"}


def test_repository_is_retained_like_the_bucket_and_runs_table(synthesized):
    repository = _repository(synthesized)
    bucket = synthesized.resource(synthesized.stack.storage.bucket)

    assert repository["DeletionPolicy"] == bucket["DeletionPolicy"] == "Retain"
    assert repository["UpdateReplacePolicy"] == bucket["UpdateReplacePolicy"] == "Retain"
    # No fixed name: a retained repository cannot block the next deploy of the same stack name.
    assert "RepositoryName" not in repository["Properties"]


def _lifecycle_rules(template):
    return json.loads(template["Properties"]["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]


def test_lifecycle_keeps_the_newest_30_images_by_default(synthesized):
    [rule] = _lifecycle_rules(_repository(synthesized))

    assert rule["selection"] == {
        "tagStatus": "any",
        "countType": "imageCountMoreThan",
        "countNumber": 30,
    }
    assert rule["action"] == {"type": "expire"}
    assert cdk_json_context()["runctl:imagesKeep"] == 30


def test_lifecycle_count_follows_runctl_images_keep(configured):
    [rule] = _lifecycle_rules(_repository(configured))

    assert rule["selection"]["countNumber"] == 12


# --- the build project ------------------------------------------------------------------------


def test_project_builds_without_a_source_in_a_privileged_small_x86_environment(synthesized):
    properties = _project(synthesized)["Properties"]

    assert properties["Source"]["Type"] == "NO_SOURCE"
    assert properties["Artifacts"] == {"Type": "NO_ARTIFACTS"}
    environment = properties["Environment"]
    assert environment["Image"] == "aws/codebuild/standard:7.0"
    assert environment["Type"] == "LINUX_CONTAINER"
    assert environment["ComputeType"] == "BUILD_GENERAL1_SMALL"
    assert environment["PrivilegedMode"] is True  # the Docker daemon needs it
    assert properties["TimeoutInMinutes"] == 60


def test_project_logs_to_the_run_log_group_only(synthesized):
    logs = _project(synthesized)["Properties"]["LogsConfig"]
    group = synthesized.logical_id(synthesized.stack.storage.run_log_group)

    # BuildImage names the stream per build (<run_id>/build); no S3 logs
    assert logs == {"CloudWatchLogs": {"GroupName": {"Ref": group}, "Status": "ENABLED"}}


def test_project_knows_its_registry_and_repository(synthesized):
    variables = {
        variable["Name"]: variable
        for variable in _project(synthesized)["Properties"]["Environment"]["EnvironmentVariables"]
    }
    uri = _get_att(synthesized, synthesized.stack.images.repository, "RepositoryUri")

    assert variables == {
        "RUNCTL_REGISTRY": {
            "Name": "RUNCTL_REGISTRY",
            "Type": "PLAINTEXT",
            "Value": {"Fn::Select": [0, {"Fn::Split": ["/", uri]}]},
        },
        "RUNCTL_REPOSITORY_URI": {
            "Name": "RUNCTL_REPOSITORY_URI",
            "Type": "PLAINTEXT",
            "Value": uri,
        },
    }


# --- the buildspec ----------------------------------------------------------------------------


def test_buildspec_downloads_extracts_logs_in_then_builds_and_pushes(synthesized):
    spec = _build_spec(synthesized)

    assert spec["version"] == "0.2"
    pre_build, build = spec["phases"]["pre_build"]["commands"], spec["phases"]["build"]["commands"]
    assert any(command.startswith("aws s3 cp") for command in pre_build)
    assert any(command.startswith("tar -xzf") for command in pre_build)
    assert (
        "aws ecr get-login-password | docker login --username AWS --password-stdin "
        '"$RUNCTL_REGISTRY"' in pre_build
    )
    # The build is the argv-building script, then the push; a failure stops the build there.
    assert build == [f"python3 {BUILD_SCRIPT}", 'docker push "$RUNCTL_IMAGE_URI"']
    assert {phase["on-failure"] for phase in spec["phases"].values()} == {"ABORT"}


def test_no_user_string_reaches_a_shell(synthesized):
    # Given the shell commands (the script's text, behind its quoted heredoc, excluded)
    shell = [command.partition(f"<<'{SCRIPT_DELIMITER}'")[0] for command in _commands(synthesized)]
    expansions = [name for command in shell for name in re.findall(r"\$\{?(\w+)", command)]

    # Then the Dockerfile path and the build args are never expanded by a shell, the caller's
    # URIs only inside double quotes, and `docker build` runs only in the script, as an argv list
    assert sorted(expansions) == ["RUNCTL_CONTEXT_URI", "RUNCTL_IMAGE_URI", "RUNCTL_REGISTRY"]
    for command in shell:
        for name in re.findall(r"\$\{?\w+", command):
            assert f'"{name}"' in command, command
        assert "docker build" not in command
    assert 'argv = ["docker", "build", "-f", dockerfile]' in DOCKER_BUILD_PY
    assert "subprocess.run(argv)" in DOCKER_BUILD_PY
    assert "shell=True" not in DOCKER_BUILD_PY


def test_the_heredoc_writes_the_build_script_verbatim(synthesized, tmp_path):
    # Given the buildspec's command that writes the script, pointed at a scratch file
    [write] = [command for command in _commands(synthesized) if SCRIPT_DELIMITER in command]
    target = tmp_path / "docker_build.py"

    # When bash runs it, with something appended on a line of its own as a runner might
    subprocess.run(["bash", "-c", write.replace(BUILD_SCRIPT, str(target)) + "true"], check=True)

    # Then the file is the script, byte for byte
    assert target.read_text() == DOCKER_BUILD_PY


@pytest.fixture
def build_script(tmp_path):
    """Runs DOCKER_BUILD_PY on a context in tmp_path with a `docker` that records its argv."""
    context = tmp_path / "context"
    (context / "docker files").mkdir(parents=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorded = tmp_path / "argv.json"
    docker = bin_dir / "docker"
    docker.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"open({str(recorded)!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    docker.chmod(0o755)
    script = tmp_path / "docker_build.py"
    script.write_text(DOCKER_BUILD_PY.replace(repr(CONTEXT_DIR), repr(str(context))))

    def run(dockerfile, build_args, image=f"{REPOSITORY_URI}:abc123"):
        env = {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "RUNCTL_IMAGE_URI": image,
            "RUNCTL_REPOSITORY_URI": REPOSITORY_URI,
            "RUNCTL_DOCKERFILE": dockerfile,
            "RUNCTL_BUILD_ARGS": json.dumps(build_args),
        }
        done = subprocess.run(
            [sys.executable, str(script)], env=env, capture_output=True, text=True, check=False
        )
        argv = json.loads(recorded.read_text()) if recorded.exists() else None
        return done, argv

    return context, run


HOSTILE = "$(touch pwned); `id` 'quoted' \"double\" \\ ${HOME} && rm -rf /\nsecond line"


def test_build_script_passes_hostile_dockerfile_path_and_args_verbatim(build_script, tmp_path):
    # Given a Dockerfile whose path and build args are full of shell syntax
    context, run = build_script
    dockerfile = "docker files/$(id) `x`;.Dockerfile"
    (context / dockerfile).write_text("FROM scratch\n")

    # When the build script runs
    done, argv = run(dockerfile, {"A": HOSTILE, "EMPTY": "", "B": "b=c"})

    # Then docker got them as single arguments, unchanged, and nothing was executed
    assert done.returncode == 0, done.stderr
    root = str(context.resolve())
    assert argv == [
        "build",
        "-f",
        f"{root}/{dockerfile}",
        "--build-arg",
        f"A={HOSTILE}",
        "--build-arg",
        "EMPTY=",
        "--build-arg",
        "B=b=c",
        "-t",
        f"{REPOSITORY_URI}:abc123",
        root,
    ]
    assert not (tmp_path / "pwned").exists()
    assert not Path("pwned").exists()


@pytest.mark.parametrize(
    ("dockerfile", "build_args", "image", "problem"),
    [
        ("../outside/Dockerfile", {}, f"{REPOSITORY_URI}:t", "not a file inside the build context"),
        ("/etc/hostname", {}, f"{REPOSITORY_URI}:t", "not a file inside the build context"),
        ("missing/Dockerfile", {}, f"{REPOSITORY_URI}:t", "not a file inside the build context"),
        ("Dockerfile", {"--no-cache A": "x"}, f"{REPOSITORY_URI}:t", "build args"),
        ("Dockerfile", ["A=x"], f"{REPOSITORY_URI}:t", "build args"),
        ("Dockerfile", {}, "docker.io/library/python:3", "not a tag of this stack's repository"),
    ],
)
def test_build_script_refuses_what_it_must_not_build(
    build_script, dockerfile, build_args, image, problem
):
    context, run = build_script
    (context / "Dockerfile").write_text("FROM scratch\n")
    (context.parent / "outside").mkdir()
    (context.parent / "outside" / "Dockerfile").write_text("FROM scratch\n")

    done, argv = run(dockerfile, build_args, image)

    assert done.returncode != 0
    assert problem in done.stderr
    assert argv is None  # docker never ran


def test_build_script_refuses_a_dockerfile_linked_from_outside_the_context(build_script):
    context, run = build_script
    outside = context.parent / "Dockerfile.outside"
    outside.write_text("FROM scratch\n")
    (context / "Dockerfile").symlink_to(outside)

    done, argv = run("Dockerfile", {})

    assert done.returncode != 0
    assert argv is None


# --- who may do what --------------------------------------------------------------------------


def test_build_role_reads_contexts_pushes_to_the_repository_and_logs_to_the_run_group(synthesized):
    images = synthesized.stack.images
    statements = synthesized.role_statements(images.project_role)
    bucket = synthesized.logical_id(synthesized.stack.storage.bucket)

    by_sid = {statement.get("Sid"): statement for statement in statements}
    assert by_sid["ReadBuildContexts"]["Action"] == "s3:GetObject"
    assert by_sid["ReadBuildContexts"]["Resource"] == {
        "Fn::Join": ["", [{"Fn::GetAtt": [bucket, "Arn"]}, "/contexts/*"]]
    }
    assert set(by_sid["PushRunImages"]["Action"]) == PUSH_ACTIONS
    assert by_sid["PushRunImages"]["Resource"] == _get_att(synthesized, images.repository)
    assert by_sid["LogInToEcr"] == {
        "Action": "ecr:GetAuthorizationToken",
        "Effect": "Allow",
        "Resource": "*",
        "Sid": "LogInToEcr",
    }
    [logs] = [s for s in statements if "Sid" not in s]
    assert set(logs["Action"]) == {"logs:CreateLogStream", "logs:PutLogEvents"}
    assert logs["Resource"] == _get_att(synthesized, synthesized.stack.storage.run_log_group)
    # Nothing else: no default /aws/codebuild/ log group, no report groups
    assert len(statements) == 4


def test_the_project_runs_as_the_build_role_after_its_policy_exists(synthesized):
    images = synthesized.stack.images
    project = _project(synthesized)

    assert project["Properties"]["ServiceRole"] == _get_att(synthesized, images.project_role)
    policy = synthesized.logical_id(images.project_role.node.find_child("DefaultPolicy"))
    assert policy in project["DependsOn"]


def test_build_image_step_may_check_images_start_and_follow_builds_and_read_their_log(synthesized):
    stack = synthesized.stack
    function = stack.orchestration.functions["BuildImage"]
    statements = {s.get("Sid"): s for s in synthesized.role_statements(function.role)}

    assert statements["FindBuiltImage"]["Action"] == "ecr:DescribeImages"
    assert statements["FindBuiltImage"]["Resource"] == _get_att(
        synthesized, stack.images.repository
    )
    assert set(statements["StartAndFollowBuild"]["Action"]) == {
        "codebuild:StartBuild",
        "codebuild:BatchGetBuilds",
    }
    assert statements["StartAndFollowBuild"]["Resource"] == _get_att(
        synthesized, stack.images.project
    )
    assert set(statements["ReadBuildLog"]["Action"]) == {
        "logs:GetLogEvents",
        "logs:DescribeLogStreams",
    }
    assert statements["ReadBuildLog"]["Resource"] == _get_att(
        synthesized, stack.storage.run_log_group
    )
    assert "dynamodb:UpdateItem" in statements["UpdateRunRecord"]["Action"]
    assert statements["UpdateRunRecord"]["Resource"] == _get_att(
        synthesized, stack.storage.runs_table
    )
    # It reads nothing in S3 (the build does)
    actions = [a for s in statements.values() for a in synthesized.listed(s["Action"])]
    assert not [action for action in actions if action.startswith("s3:")]


def test_instance_role_pulls_from_the_stack_repository_only_by_default(synthesized):
    role = synthesized.stack.compute.instance_role
    statements = {s.get("Sid"): s for s in _statements_with(synthesized, role, "ecr:")}

    assert set(statements) == {"PullRunImages", "LogInToEcr"}
    assert set(statements["PullRunImages"]["Action"]) == PULL_ACTIONS
    assert statements["PullRunImages"]["Resource"] == _get_att(
        synthesized, synthesized.stack.images.repository
    )
    assert statements["LogInToEcr"]["Resource"] == "*"


def test_runctl_pull_repositories_adds_exactly_those_repositories(configured):
    # Given runctl:pullRepositories = a name in this account and region, and another ARN
    role = configured.stack.compute.instance_role
    [pull] = [s for s in configured.role_statements(role) if s.get("Sid") == "PullRunImages"]
    named = {
        "Fn::Join": [
            "",
            ["arn:aws:ecr:eu-west-1:", {"Ref": "AWS::AccountId"}, ":repository/team/pytorch"],
        ]
    }

    # Then the instances may pull from the stack's repository and exactly those two
    assert sorted(map(json.dumps, pull["Resource"])) == sorted(
        map(
            json.dumps,
            [_get_att(configured, configured.stack.images.repository), named, PULL_REPOSITORY_ARN],
        )
    )
    # And the Lambdas know the two (ValidateRun refuses an ECR image from any other)
    variables = configured.resource(configured.stack.orchestration.functions["ValidateRun"])[
        "Properties"
    ]["Environment"]["Variables"]
    assert variables["PULL_REPOSITORIES"] == {
        "Fn::Join": [
            "",
            [
                "arn:aws:ecr:eu-west-1:",
                {"Ref": "AWS::AccountId"},
                f":repository/team/pytorch,{PULL_REPOSITORY_ARN}",
            ],
        ]
    }


def test_no_role_gets_wildcard_ecr_or_codebuild_access(synthesized):
    # Given every statement in the stack that grants an ECR or CodeBuild action
    granted = [
        statement
        for statements in synthesized.policy_statements().values()
        for statement in statements
        if any(
            action.split(":")[0] in ("ecr", "codebuild")
            for action in synthesized.listed(statement["Action"])
        )
    ]

    # Then no action is a wildcard, and only GetAuthorizationToken (no resource scope) has '*'
    assert granted
    for statement in granted:
        actions = synthesized.listed(statement["Action"])
        assert not [action for action in actions if "*" in action], statement
        if "*" in synthesized.listed(statement["Resource"]):
            assert actions == ["ecr:GetAuthorizationToken"], statement


# --- what the Lambdas and the client are told ---------------------------------------------------


def test_lambdas_are_told_the_repository_project_and_pull_repositories(synthesized):
    stack = synthesized.stack
    variables = synthesized.resource(stack.orchestration.functions["BuildImage"])["Properties"][
        "Environment"
    ]["Variables"]

    assert variables["IMAGE_REPOSITORY_NAME"] == {
        "Ref": synthesized.logical_id(stack.images.repository)
    }
    assert variables["IMAGE_REPOSITORY_URI"] == _get_att(
        synthesized, stack.images.repository, "RepositoryUri"
    )
    assert variables["BUILD_PROJECT_NAME"] == {"Ref": synthesized.logical_id(stack.images.project)}
    assert variables["PULL_REPOSITORIES"] == ""  # none but the stack's own, by default


def test_outputs_name_the_repository_and_the_build_project(synthesized):
    outputs = synthesized.template_json["Outputs"]
    images = synthesized.stack.images

    assert outputs["ImageRepositoryUri"]["Value"] == _get_att(
        synthesized, images.repository, "RepositoryUri"
    )
    assert outputs["ImageBuildProjectName"]["Value"] == {
        "Ref": synthesized.logical_id(images.project)
    }


# --- the settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("runctl:imagesKeep", 0),
        ("runctl:imagesKeep", "many"),
        ("runctl:imagesKeep", 10_001),
        ("runctl:imagesKeep", True),
        ("runctl:pullRepositories", ["Team/PyTorch"]),
        ("runctl:pullRepositories", ["team/*"]),
        ("runctl:pullRepositories", ["arn:aws:ecr:us-east-1:123456789012:repository/*"]),
        ("runctl:pullRepositories", ["arn:aws:s3:::bucket"]),
        ("runctl:pullRepositories", ["team/pytorch", "team/pytorch"]),
        ("runctl:pullRepositories", "[not json"),
        ("runctl:pullRepositories", {"team": "pytorch"}),
    ],
)
def test_bad_image_settings_fail_synth_naming_the_key(key, value):
    with pytest.raises(ConfigError) as raised:
        build_app({key: value})

    assert raised.value.key == key
    assert key in str(raised.value)


def test_image_settings_from_the_command_line_are_parsed():
    context = {
        **cdk_json_context(),
        "runctl:imagesKeep": "50",
        "runctl:pullRepositories": f"team/pytorch, {PULL_REPOSITORY_ARN}",
    }

    config = RunctlConfig.from_context(context)

    assert config.images_keep == 50
    assert config.pull_repositories == ("team/pytorch", PULL_REPOSITORY_ARN)
