"""BuildImage: make sure a `container.build` run's image is in the stack's repository before any
instance is launched, building it with CodeBuild when it is not (one bounded poll per call).

The tag hashes everything the build reads (lambdas/models/run_spec.py, ContainerBuild.tag) and
the repository's tags are immutable, so an image found under it is the one asked for: a resubmit
of the same context builds nothing. Runs that need the same image at once (a sweep) share one
build through StartBuild's idempotency token; a build that fails because another one pushed the
tag first (immutable tags refuse the second push) is no failure: the image is there.
"""

from __future__ import annotations

from lambdas.dal.runs_table import RunsTable
from lambdas.env import LambdaEnv
from lambdas.errors import ImageBuildFailed
from lambdas.integrations.image_builds import (
    BUILD_IN_PROGRESS,
    BUILD_SUCCEEDED,
    BuildRequest,
    ImageBuilds,
)
from lambdas.logic.containers import built_image_uri
from lambdas.logic.polling import MAX_BUILD_POLL_SECONDS, next_poll_seconds
from lambdas.logic.stopping import ensure_not_stopped
from lambdas.models.steps import BuildImageInput, ImageBuildProbe

# CodeBuild's limit on one build (the project's timeout, stacks/images.py): the polls stop there.
BUILD_TIMEOUT_SECONDS = 60 * 60
# The build's log lines quoted when it fails: enough for docker's error and what led to it.
FAILURE_LINES = 12
FAILURE_CHARS = 2000
BUILD_STREAM_PREFIX = "builds"


def build_log_stream(tag: str) -> str:
    """The build's log stream name as given to CodeBuild (which appends '/<build uuid>'), in the
    run log group beside the attempts' '<run_id>/<attempt>' streams. Named by the image, not the
    run: runs that share a build (a sweep's) send the same StartBuild request, as its
    idempotency token requires (a changed parameter is refused)."""
    return f"{BUILD_STREAM_PREFIX}/{tag}"


def ensure_image(
    request: BuildImageInput,
    env: LambdaEnv,
    builds: ImageBuilds,
    table: RunsTable,
    now: float,
    now_iso: str,
) -> ImageBuildProbe:
    run = request.run
    container = run.spec.container
    assert container is not None and container.build is not None, "BuildImage needs a build"
    ensure_not_stopped(table, run.run_id, run.attempt)
    build = container.build
    uri = built_image_uri(container, env)
    previous = request.build
    started_at = previous.started_at if previous and previous.started_at else now

    digest = builds.image_digest(env.IMAGE_REPOSITORY_NAME, build.tag)
    if digest is not None:
        built_now = previous is not None and previous.build_id is not None
        _record(table, run.run_id, run.attempt, now_iso, uri, digest, previous)
        return ImageBuildProbe(
            ready=True,
            image_uri=uri,
            digest=digest,
            build_id=previous.build_id if previous else None,
            started_at=started_at,
            detail="built" if built_now else "the image was built before: nothing to build",
        )

    if previous is None or previous.build_id is None:
        build_id = builds.start(
            BuildRequest(
                project=env.BUILD_PROJECT_NAME,
                context_uri=build.context.s3_uri,
                dockerfile=build.dockerfile,
                build_args=dict(build.args),
                image_uri=uri,
                idempotency_token=f"runctl-{build.tag[:48]}",
                log_group=env.LOG_GROUP_NAME,
                log_stream=build_log_stream(build.tag),
            )
        )
        probe = ImageBuildProbe(
            ready=False,
            image_uri=uri,
            build_id=build_id,
            started_at=started_at,
            detail="build started",
            wait_seconds=request.poll_seconds,
        )
        _record(table, run.run_id, run.attempt, now_iso, uri, None, probe)
        return probe

    state = builds.state(previous.build_id)
    if state.status == BUILD_IN_PROGRESS:
        return previous.model_copy(
            update={
                "detail": f"building ({state.phase or 'starting'})",
                "wait_seconds": next_poll_seconds(
                    request.poll_seconds, now - started_at, MAX_BUILD_POLL_SECONDS
                ),
            }
        )
    lines = builds.last_log_lines(state, FAILURE_LINES)
    if state.status == BUILD_SUCCEEDED:
        # Succeeded, yet no image under the tag: the build did not push what it was asked to.
        raise ImageBuildFailed(
            f"the image build {state.build_id} succeeded but {uri} is not in the repository"
        )
    tail = " | ".join(lines)[-FAILURE_CHARS:] or "no log lines"
    raise ImageBuildFailed(
        f"the image build {state.build_id} ended {state.status} in phase {state.phase or '?'}: "
        f"{tail}"
    )


def _record(
    table: RunsTable,
    run_id: str,
    attempt: int,
    now_iso: str,
    uri: str,
    digest: str | None,
    probe: ImageBuildProbe | None,
) -> None:
    """The run item's `image`: what `runctl status` shows and `runctl logs` follows."""
    image = {"uri": uri, "digest": digest, "build_id": probe.build_id if probe else None}
    table.update_live(run_id, attempt, now_iso, {"image": image})
