"""Local mode's CodeBuild builds images for real: StartBuild on the image-build project runs
`docker build` on the context uploaded to (emulated) S3, streams docker's output into the build's
log stream, and puts the image in (emulated) ECR under its tag, tagged locally with its URI.
These tests need the Docker engine (`make container-engine`): without it they fail, never skip."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.local.image_build_support import (
    BASE_IMAGE,
    Builds,
    context_archive,
    docker,
    image_build_emulator,
)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Builds]:
    with image_build_emulator(tmp_path_factory.mktemp("emulator")) as running:
        yield running


DOCKERFILE = f"""\
FROM {BASE_IMAGE}
ARG GREETING
COPY hello.txt /srv/hello.txt
RUN echo "greeting=$GREETING"
"""


def test_a_build_puts_the_image_in_ecr_by_tag_and_tags_it_locally(builds: Builds):
    # Given a context: a Dockerfile, a file it copies in, an ARG it echoes
    image_uri = builds.image_uri()
    files = {"Dockerfile": DOCKERFILE, "hello.txt": "hello from the context\n"}

    # When it is built
    started = builds.start(files, image_uri=image_uri, build_args={"GREETING": "hi"})
    build = builds.wait(started["id"])

    # Then it succeeded, logged docker's output under <streamName>/<build uuid> ...
    assert started["buildStatus"] == "IN_PROGRESS"
    assert build["buildStatus"] == "SUCCEEDED"
    assert build["logs"]["streamName"] == f"run-1/build/{build['id'].split(':')[-1]}"
    assert any("greeting=hi" in line for line in builds.log_lines(build))
    # ... the image is in ECR under its tag, with a digest ...
    found = builds.ecr_image(image_uri)
    assert found is not None and found["imageDigest"].startswith("sha256:")
    # ... and in the engine under its full URI: the agent finds it without a pull
    local_id = docker("image", "inspect", "--format", "{{.Id}}", image_uri).stdout.strip()
    manifest = builds.clients.ecr.batch_get_image(
        repositoryName=builds.images.repository, imageIds=[{"imageTag": found["imageTags"][0]}]
    )["images"][0]["imageManifest"]
    assert json.loads(manifest)["config"]["digest"] == local_id
    assert docker("run", "--rm", image_uri, "cat", "/srv/hello.txt").stdout == (
        "hello from the context\n"
    )


def test_a_failing_dockerfile_ends_failed_with_dockers_error_last_and_no_image(builds: Builds):
    image_uri = builds.image_uri()
    files = {"Dockerfile": f"FROM {BASE_IMAGE}\nRUN echo about-to-fail && false\n"}

    build = builds.wait(builds.start(files, image_uri=image_uri)["id"])

    assert build["buildStatus"] == "FAILED"
    lines = builds.log_lines(build)
    # docker's own error is the last line (legacy builder and BuildKit both quote the command)
    assert "echo about-to-fail && false" in lines[-1], lines[-5:]
    assert builds.ecr_image(image_uri) is None
    assert docker("image", "inspect", image_uri).returncode != 0


def test_the_same_idempotency_token_starts_one_docker_build(builds: Builds):
    files = {"Dockerfile": DOCKERFILE, "hello.txt": "once\n"}
    context_uri = builds.upload(context_archive(files))
    image_uri = builds.image_uri()
    before = builds.emulator.image_builds.docker_builds_started()

    first = builds.start(context_uri=context_uri, image_uri=image_uri, token="tag-abc")
    second = builds.start(context_uri=context_uri, image_uri=image_uri, token="tag-abc")
    build = builds.wait(first["id"])

    assert second["id"] == first["id"]
    assert build["buildStatus"] == "SUCCEEDED"
    assert builds.emulator.image_builds.docker_builds_started() == before + 1
    listed = builds.clients.codebuild.list_builds_for_project(projectName=builds.images.project)
    assert listed["ids"].count(first["id"]) == 1
    # The same token with another request is refused, as on AWS (a parameter mismatch).
    codebuild = builds.clients.codebuild
    with pytest.raises(codebuild.exceptions.InvalidInputException):
        builds.start(context_uri=context_uri, image_uri=builds.image_uri(), token="tag-abc")


def test_build_args_with_shell_metacharacters_reach_the_build_verbatim(builds: Builds):
    hostile = {"A": "$(id)", "B": "a b", "C": "'; touch /pwned #", "D": "`uname`\n$HOME"}
    dockerfile = f"FROM {BASE_IMAGE}\n" + "".join(
        f"ARG {name}\nRUN printf '%s' \"${name}\" > /arg-{name}\n" for name in hostile
    )
    image_uri = builds.image_uri()

    build = builds.wait(
        builds.start({"Dockerfile": dockerfile}, image_uri=image_uri, build_args=hostile)["id"]
    )

    assert build["buildStatus"] == "SUCCEEDED", builds.log_lines(build)[-5:]
    for name, value in hostile.items():
        assert docker("run", "--rm", image_uri, "cat", f"/arg-{name}").stdout == value
    assert docker("run", "--rm", image_uri, "ls", "/pwned").returncode != 0


def test_a_dockerfile_outside_the_context_is_refused(builds: Builds):
    build = builds.wait(
        builds.start({"Dockerfile": DOCKERFILE}, dockerfile="../../etc/passwd")["id"]
    )

    assert build["buildStatus"] == "FAILED"
    assert "not inside the build context" in builds.log_lines(build)[-1]


def test_a_context_with_a_member_outside_it_is_not_extracted(builds: Builds, tmp_path: Path):
    # Given an archive whose member climbs out of the extraction directory
    buffer = io.BytesIO()
    escape = f"../../../../../../..{tmp_path}/escaped.txt"
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("Dockerfile", escape):
            data = DOCKERFILE.encode()
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))

    build = builds.wait(builds.start(context_uri=builds.upload(buffer.getvalue()))["id"])

    assert build["buildStatus"] == "FAILED"
    assert "cannot extract the build context" in builds.log_lines(build)[-1]
    assert not (tmp_path / "escaped.txt").exists()


def test_a_build_on_a_machine_without_an_engine_fails_saying_so(
    builds: Builds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    before = builds.emulator.image_builds.docker_builds_started()
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker here

    build = builds.wait(builds.start({"Dockerfile": DOCKERFILE})["id"])

    assert build["buildStatus"] == "FAILED"
    assert "make container-engine" in builds.log_lines(build)[-1]
    assert builds.emulator.image_builds.docker_builds_started() == before
