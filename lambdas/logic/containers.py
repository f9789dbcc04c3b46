"""Container runs (issue #12): which image a run's script runs in, how the agent gets it, and
what ValidateRun refuses before anything is built or launched."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lambdas.env import LambdaEnv
from lambdas.logic.images import ARM64, InstanceTypeInfo
from lambdas.models.run_spec import BUILD_PLATFORM, Container, RunSpec

# <account>.dkr.ecr.<region>.amazonaws.com[.cn]/<repository>[:tag][@digest]
_ECR_IMAGE = re.compile(
    r"^(?P<registry>(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com"
    r"(?:\.cn)?)/(?P<repository>[^:@]+)"
)
# What the agent runs the entry point with inside an image when the RunSpec names no interpreter:
# every Python image (Debian's, the official python and pytorch images) has python3 on PATH.
DEFAULT_CONTAINER_INTERPRETER = "python3"
PULL_ALWAYS = "always"
PULL_IF_MISSING = "if-missing"


@dataclass(frozen=True)
class EcrImage:
    registry: str
    account: str
    region: str
    repository: str

    def repository_arn(self, partition: str = "aws") -> str:
        return f"arn:{partition}:ecr:{self.region}:{self.account}:repository/{self.repository}"


def ecr_image(uri: str) -> EcrImage | None:
    """The ECR parts of an image URI; None for any other registry (Docker Hub, public ECR)."""
    match = _ECR_IMAGE.match(uri)
    if match is None:
        return None
    return EcrImage(match["registry"], match["account"], match["region"], match["repository"])


def built_image_uri(container: Container, env: LambdaEnv) -> str:
    """The stack repository's URI of a `build` image: its tag is the hash of the build's inputs."""
    assert container.build is not None
    return f"{env.IMAGE_REPOSITORY_URI}:{container.build.tag}"


def image_uri(container: Container, env: LambdaEnv) -> str:
    return container.image if container.image is not None else built_image_uri(container, env)


def agent_container(spec: RunSpec, env: LambdaEnv) -> dict[str, Any] | None:
    """The agent config's `container` (instance_agent/config.py): the image, whether to pull it
    when the instance has it already, the ECR registry to log in to, and the interpreter."""
    container = spec.container
    if container is None:
        return None
    uri = image_uri(container, env)
    ecr = ecr_image(uri)
    # Our tags are content hashes in an IMMUTABLE repository, and a digest names one image:
    # what the instance has under that name is what was asked for. Any other tag may have moved.
    fixed = container.build is not None or "@sha256:" in uri
    return {
        "image": uri,
        "pull": PULL_IF_MISSING if fixed else PULL_ALWAYS,
        "ecr_registry": ecr.registry if ecr is not None else None,
        "interpreter": spec.interpreter or DEFAULT_CONTAINER_INTERPRETER,
    }


def container_problem(
    spec: RunSpec, env: LambdaEnv, infos: dict[str, InstanceTypeInfo]
) -> str | None:
    """Why this stack cannot run the spec's container (one sentence naming the field), or None."""
    container = spec.container
    if container is None:
        return None
    if container.build is not None:
        if not (env.BUILD_PROJECT_NAME and env.IMAGE_REPOSITORY_URI):
            return "container.build: this stack has no image build project; redeploy runctl"
        arm = [name for name in spec.instance_types or [] if infos[name].architecture == ARM64]
        if arm:
            return (
                f"container.build: images are built for {BUILD_PLATFORM} only, but "
                f"{', '.join(arm)} run arm64; choose x86_64 instance types or give an arm64 "
                "image with container.image"
            )
        return None
    assert container.image is not None
    ecr = ecr_image(container.image)
    if ecr is None:
        return None  # a public registry: no IAM to check
    own = ecr_image(env.IMAGE_REPOSITORY_URI) if env.IMAGE_REPOSITORY_URI else None
    allowed = set(env.PULL_REPOSITORIES)
    if own is not None:
        allowed.add(own.repository_arn())
    wanted = ecr.repository_arn()
    if not any(arn.split(":", 2)[2] == wanted.split(":", 2)[2] for arn in allowed):
        return (
            f"container.image: the instances may not pull from ECR repository "
            f"{ecr.repository!r} in {ecr.account}/{ecr.region}; add it to runctl:pullRepositories "
            "in cdk.json and redeploy"
        )
    return None
