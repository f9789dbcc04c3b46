"""RunSpec `container` (issue #12): the model, the build tag, the agent's container settings and
what ValidateRun refuses before anything is built or launched."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from lambdas.env import LambdaEnv
from lambdas.logic.containers import agent_container, container_problem, ecr_image
from lambdas.logic.images import InstanceTypeInfo
from lambdas.models.run_spec import Container, RunSpec

REPO_URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/runctl-images"
CONTEXT = {"s3_uri": "s3://bkt/contexts/c.tar.gz", "sha256": "a" * 64}


def _env(**overrides: object) -> LambdaEnv:
    values = {
        "RUNS_TABLE_NAME": "t",
        "BUCKET_NAME": "b",
        "LOG_GROUP_NAME": "g",
        "LAUNCH_TEMPLATE_ID": "lt",
        "AGENT_S3_URI": "s3://bkt/agent.zip",
        "DEFAULT_INSTANCE_TYPES": "g5.xlarge",
        "IMAGE_REPOSITORY_NAME": "runctl-images",
        "IMAGE_REPOSITORY_URI": REPO_URI,
        "BUILD_PROJECT_NAME": "runctl-build",
        **overrides,
    }
    return LambdaEnv.model_validate(values)


def _spec(container: dict[str, object], **fields: object) -> RunSpec:
    return RunSpec.model_validate(
        {
            "code": {"s3_uri": "s3://bkt/code/x.tar.gz"},
            "entry_point": "train.py",
            "instance_types": ["g5.xlarge"],
            "container": container,
            **fields,
        }
    )


INFOS = {
    "g5.xlarge": InstanceTypeInfo("g5.xlarge", "x86_64", 1),
    "g5g.xlarge": InstanceTypeInfo("g5g.xlarge", "arm64", 1),
}


@pytest.mark.parametrize("container", [{}, {"image": "python:3.12", "build": {"context": CONTEXT}}])
def test_a_container_takes_exactly_one_of_image_and_build(container: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="exactly one of image and build"):
        Container.model_validate(container)


@pytest.mark.parametrize("image", ["a b", "x;rm -rf /", "Upper/Case", "repo:tag with space", ""])
def test_an_image_reference_docker_would_refuse_is_refused(image: str) -> None:
    with pytest.raises(ValidationError, match=r"container\.image"):
        _spec({"image": image})


def test_the_build_tag_changes_with_every_input_and_only_with_them() -> None:
    base = {"context": CONTEXT, "dockerfile": "Dockerfile", "args": {"A": "1", "B": "2"}}
    tag = Container.model_validate({"build": base}).build.tag  # type: ignore[union-attr]
    same = {**base, "args": {"B": "2", "A": "1"}}  # the order of the args is not an input
    assert Container.model_validate({"build": same}).build.tag == tag  # type: ignore[union-attr]
    for changed in (
        {**base, "context": {**CONTEXT, "sha256": "b" * 64}},
        {**base, "dockerfile": "docker/Dockerfile"},
        {**base, "args": {"A": "1", "B": "3"}},
    ):
        assert Container.model_validate({"build": changed}).build.tag != tag  # type: ignore[union-attr]
    assert len(tag) == 64 and tag.isalnum()  # a valid ECR tag


def test_a_built_image_is_pulled_only_when_missing_from_the_stack_repository() -> None:
    spec = _spec({"build": {"context": CONTEXT}})
    settings = agent_container(spec, _env())
    assert settings == {
        "image": f"{REPO_URI}:{spec.container.build.tag}",  # type: ignore[union-attr]
        "pull": "if-missing",
        "ecr_registry": "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        "interpreter": "python3",
    }


@pytest.mark.parametrize(
    ("image", "pull", "registry"),
    [
        ("pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime", "always", None),
        ("python@sha256:" + "c" * 64, "if-missing", None),
        (
            "999999999999.dkr.ecr.eu-west-1.amazonaws.com/team/train:v3",
            "always",
            "999999999999.dkr.ecr.eu-west-1.amazonaws.com",
        ),
    ],
)
def test_a_given_image_is_pulled_unless_a_digest_fixes_it(
    image: str, pull: str, registry: str | None
) -> None:
    settings = agent_container(_spec({"image": image}, interpreter="/opt/conda/bin/python"), _env())
    assert settings == {
        "image": image,
        "pull": pull,
        "ecr_registry": registry,
        "interpreter": "/opt/conda/bin/python",
    }


def test_no_container_means_no_container_settings() -> None:
    spec = RunSpec.model_validate(
        {"code": {"s3_uri": "s3://bkt/code/x.tar.gz"}, "entry_point": "t.py"}
    )
    assert agent_container(spec, _env()) is None
    assert container_problem(spec, _env(), INFOS) is None


def test_a_build_for_arm64_instance_types_is_refused_naming_them() -> None:
    spec = _spec({"build": {"context": CONTEXT}}, instance_types=["g5.xlarge", "g5g.xlarge"])
    problem = container_problem(spec, _env(), INFOS)
    assert problem is not None and "g5g.xlarge" in problem and "linux/amd64" in problem
    assert "g5.xlarge," not in problem


def test_a_build_on_a_stack_without_a_build_project_is_refused() -> None:
    spec = _spec({"build": {"context": CONTEXT}})
    problem = container_problem(spec, _env(BUILD_PROJECT_NAME=""), INFOS)
    assert problem is not None and problem.startswith("container.build:")


def test_an_ecr_image_outside_the_pull_repositories_is_refused() -> None:
    other = "999999999999.dkr.ecr.eu-west-1.amazonaws.com/team/train:v3"
    problem = container_problem(_spec({"image": other}), _env(), INFOS)
    assert problem is not None
    assert "'team/train'" in problem and "runctl:pullRepositories" in problem
    allowed = _env(PULL_REPOSITORIES="arn:aws:ecr:eu-west-1:999999999999:repository/team/train")
    assert container_problem(_spec({"image": other}), allowed, INFOS) is None
    own = f"{REPO_URI}:mine"
    assert container_problem(_spec({"image": own}), _env(), INFOS) is None
    assert container_problem(_spec({"image": "python:3.12"}), _env(), INFOS) is None


def test_ecr_image_parts() -> None:
    parts = ecr_image("123456789012.dkr.ecr.us-east-1.amazonaws.com/a/b:t")
    assert parts is not None
    assert parts.repository == "a/b"
    assert parts.repository_arn() == "arn:aws:ecr:us-east-1:123456789012:repository/a/b"
    assert ecr_image("public.ecr.aws/x/y:1") is None
