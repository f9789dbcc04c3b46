"""Run images (issue #12): the ECR repository that holds them and the CodeBuild project that builds
them from a build context in the bucket, without Docker on the user's machine."""

from __future__ import annotations

from typing import Final

from aws_cdk import Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambdas.constants import (
    BUILD_ENV_BUILD_ARGS,
    BUILD_ENV_CONTEXT_URI,
    BUILD_ENV_DOCKERFILE,
    BUILD_ENV_IMAGE_URI,
    BUILD_ENV_REGISTRY,
    BUILD_ENV_REPOSITORY_URI,
    CONTEXTS_PREFIX,
)
from lambdas.logic.image_builds import BUILD_TIMEOUT_SECONDS
from stacks.nag_acknowledgements import (
    NO_RESOURCE_SCOPE,
    acknowledge,
    acknowledge_resource_wildcard,
)

BUILD_TIMEOUT: Final = Duration.seconds(BUILD_TIMEOUT_SECONDS)
# x86_64 (Ubuntu 22.04, Docker); arm64 images would need an ARM build environment (later).
BUILD_IMAGE: Final = codebuild.LinuxBuildImage.STANDARD_7_0

# What the caller (BuildImage) passes per build, by StartBuild's environmentVariablesOverride,
# and what the project sets itself (lambdas/constants.py).
ENV_CONTEXT_URI: Final = BUILD_ENV_CONTEXT_URI
ENV_DOCKERFILE: Final = BUILD_ENV_DOCKERFILE
ENV_BUILD_ARGS: Final = BUILD_ENV_BUILD_ARGS
ENV_IMAGE_URI: Final = BUILD_ENV_IMAGE_URI
ENV_REGISTRY: Final = BUILD_ENV_REGISTRY
ENV_REPOSITORY_URI: Final = BUILD_ENV_REPOSITORY_URI

WORK_DIR: Final = "/tmp/runctl-build"  # noqa: S108 - inside the build's own fresh container
CONTEXT_DIR: Final = f"{WORK_DIR}/context"
BUILD_SCRIPT: Final = f"{WORK_DIR}/docker_build.py"
SCRIPT_DELIMITER: Final = "RUNCTL_PY"

# Runs `docker build` with an argv list: the Dockerfile path and the build args are user strings
# and never reach a shell. It also refuses a Dockerfile outside the context and an image that is
# not a tag of this stack's repository (IAM would refuse the push anyway; this says why).
DOCKER_BUILD_PY: Final = f"""\
import json, os, re, subprocess, sys


def given(name):
    value = os.environ.get(name, "")
    if not value:
        sys.exit("runctl: the build needs %s" % name)
    return value


context = os.path.realpath({CONTEXT_DIR!r})
image = given({ENV_IMAGE_URI!r})
if not image.startswith(given({ENV_REPOSITORY_URI!r}) + ":"):
    sys.exit("runctl: %s is not a tag of this stack's repository" % image)
relative = given({ENV_DOCKERFILE!r})
dockerfile = os.path.realpath(os.path.join(context, relative))
if not dockerfile.startswith(context + os.sep) or not os.path.isfile(dockerfile):
    sys.exit("runctl: the Dockerfile %r is not a file inside the build context" % relative)
args = json.loads(os.environ.get({ENV_BUILD_ARGS!r}) or "{{}}")
if not isinstance(args, dict) or not all(
    re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and isinstance(value, str)
    for name, value in args.items()
):
    sys.exit("runctl: the build args must be a JSON object of names to strings")
argv = ["docker", "build", "-f", dockerfile]
for name, value in args.items():
    argv += ["--build-arg", name + "=" + value]
argv += ["-t", image, context]
print("runctl: docker build -f %r (%d build args) -t %s" % (relative, len(args), image), flush=True)
sys.exit(subprocess.run(argv).returncode)
"""

# A quoted delimiter: the shell expands nothing in the script. The newline after the delimiter
# keeps its line whole, whatever the runner appends to a command.
WRITE_BUILD_SCRIPT: Final = (
    f"cat > {BUILD_SCRIPT} <<'{SCRIPT_DELIMITER}'\n{DOCKER_BUILD_PY}{SCRIPT_DELIMITER}\n"
)

# Only the caller's URIs reach the shell, always double-quoted; the user strings are read by
# DOCKER_BUILD_PY from the environment. CodeBuild stops at the first command that fails: the
# build is then FAILED, and BuildImage reads its last log lines. The paths are fixed (no state
# is carried from one command to the next).
BUILD_SPEC: Final = {
    "version": "0.2",
    "env": {"shell": "bash"},
    "phases": {
        "pre_build": {
            "on-failure": "ABORT",
            "commands": [
                f"rm -rf {WORK_DIR} && mkdir -p {CONTEXT_DIR}",
                WRITE_BUILD_SCRIPT,
                f'aws s3 cp --only-show-errors "${ENV_CONTEXT_URI}" {WORK_DIR}/context.tar.gz',
                f"tar -xzf {WORK_DIR}/context.tar.gz -C {CONTEXT_DIR} --no-same-owner",
                "aws ecr get-login-password"
                f' | docker login --username AWS --password-stdin "${ENV_REGISTRY}"',
            ],
        },
        "build": {
            "on-failure": "ABORT",
            "commands": [f"python3 {BUILD_SCRIPT}", f'docker push "${ENV_IMAGE_URI}"'],
        },
    },
}


class Images(Construct):
    """The run images' ECR repository and the CodeBuild project that builds into it."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        bucket: s3.IBucket,
        run_log_group: logs.ILogGroup,
        images_keep: int,
        pull_repositories: tuple[str, ...] = (),
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.run_log_group = run_log_group

        # Tags are content hashes (of the build's inputs): IMMUTABLE makes "this tag exists" mean
        # "this image was built from those inputs", so a tag is never built or pushed twice.
        # AES256 (ECR-managed keys), like the bucket's SSE-S3: the stack has no KMS key, and one
        # would add a key policy the instance role and the project must be in, for no reader
        # the account's IAM does not already control. Retained like the bucket and the runs
        # table: runs name these images, and an image outlives the stack that built it.
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.AES_256,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"keep the newest {images_keep} images (runctl:imagesKeep)",
                    tag_status=ecr.TagStatus.ANY,
                    max_image_count=images_keep,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
        repository = self.repository.node.default_child
        assert isinstance(repository, ecr.CfnRepository)
        # Explicit, though AES256 is ECR's default too: CDK leaves the property out for it.
        repository.encryption_configuration = ecr.CfnRepository.EncryptionConfigurationProperty(
            encryption_type="AES256"
        )
        # <account>.dkr.ecr.<region>.amazonaws.com/<name> (ECR's own attribute, one GetAtt).
        self.repository_uri: str = repository.attr_repository_uri
        # The repositories the instances may pull from: this one and runctl:pullRepositories
        # (names in this account and region, or whole ARNs).
        self.extra_pull_repository_arns: tuple[str, ...] = tuple(
            name
            if name.startswith("arn:")
            else stack.format_arn(service="ecr", resource="repository", resource_name=name)
            for name in pull_repositories
        )
        self.pull_repository_arns = (
            self.repository.repository_arn,
            *self.extra_pull_repository_arns,
        )

        self.project_role = iam.Role(
            self,
            "BuildRole",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description="runctl image builds: read a build context, push to the run images",
        )
        self._grant_build(bucket, run_log_group)
        # CDK's Project adds grants of its own to a role it may change (its default log group
        # /aws/codebuild/<project>, and report groups): this role has exactly _grant_build's.
        self.project = codebuild.Project(
            self,
            "BuildProject",
            description="runctl: build a run image from a build context in the runctl bucket",
            build_spec=codebuild.BuildSpec.from_object_to_yaml(BUILD_SPEC),
            environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE,
                compute_type=codebuild.ComputeType.SMALL,
                # `docker build` needs the Docker daemon, which runs only in privileged mode
                # (cdk-nag 3 has no AwsSolutions rule on it to acknowledge). The project runs
                # nothing but BUILD_SPEC, in a container of its own for each build.
                privileged=True,
            ),
            environment_variables={
                ENV_REGISTRY: codebuild.BuildEnvironmentVariable(
                    value=Fn.select(0, Fn.split("/", self.repository_uri))
                ),
                ENV_REPOSITORY_URI: codebuild.BuildEnvironmentVariable(value=self.repository_uri),
            },
            timeout=BUILD_TIMEOUT,
            # Into the run log group, as the runs' own logs: BuildImage names the stream
            # <run_id>/build per build (CodeBuild appends /<build uuid>).
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=run_log_group),
            ),
            role=self.project_role.without_policy_updates(),
            grant_report_group_permissions=False,
        )
        self.project.node.add_dependency(self.project_role)
        acknowledge(
            self.project,
            "CB4",
            "the project has no artifacts and no S3 logs: what it makes goes to ECR (AES256) and "
            "CloudWatch Logs, so a customer managed key would encrypt nothing CodeBuild keeps",
        )

    def _grant_build(self, bucket: s3.IBucket, run_log_group: logs.ILogGroup) -> None:
        role = self.project_role
        # The bucket is SSE-S3 (stacks/storage.py): reading it needs no kms:Decrypt.
        contexts = bucket.arn_for_objects(f"{CONTEXTS_PREFIX}*")
        role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadBuildContexts", actions=["s3:GetObject"], resources=[contexts]
            )
        )
        acknowledge_resource_wildcard(
            role,
            contexts,
            "contexts/<sha256>.tar.gz are named by the hash of their content at submit time",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="PushRunImages",
                actions=[
                    "ecr:BatchCheckLayerAvailability",
                    "ecr:InitiateLayerUpload",
                    "ecr:UploadLayerPart",
                    "ecr:CompleteLayerUpload",
                    "ecr:PutImage",
                    "ecr:BatchGetImage",
                ],
                resources=[self.repository.repository_arn],
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                sid="LogInToEcr", actions=["ecr:GetAuthorizationToken"], resources=["*"]
            )
        )
        acknowledge_resource_wildcard(role, "*", "ecr:GetAuthorizationToken " + NO_RESOURCE_SCOPE)
        run_log_group.grant_write(role)
