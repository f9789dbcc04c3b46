"""The attempt's set-up phases before the script: a working GPU (on GPU instance types), then the
script's Python environment, or for a container run its image. Either failing ends the attempt
`environment-failed`.

The GPU check comes first: it takes a second, and a dead driver should not cost an install. An
image is pulled in a thread of its own (ImagePreparation), so a resumed attempt's checkpoint
download and data staging go on meanwhile; the attempt waits for it just before the script.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import imds
from .config import AgentConfig, local_interpreter
from .container_image import ImageFacts, prepare_image
from .environment import DEPENDENCY_FILE, ImagePython, PreparedEnvironment, prepare_environment
from .gpu import GpuReport, check_gpus
from .uv_tool import find_uv

logger = logging.getLogger(__name__)


class ImagePreparation:
    """prepare_image() in a thread: started at once, waited for before the script starts."""

    def __init__(self, work: Callable[[], ImageFacts], image: str) -> None:
        self.image = image
        self.facts: ImageFacts | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(work,), name="image-pull", daemon=True
        )
        self._thread.start()

    def _run(self, work: Callable[[], ImageFacts]) -> None:
        try:
            self.facts = work()
        except BaseException as error:  # handed to the main thread by wait()
            self._error = error

    def wait(self) -> ImageFacts:
        """The image's facts; what prepare_image raised (EnvironmentFailed, ...) otherwise."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self.facts is not None
        return self.facts

    def to_dict(self) -> dict[str, Any]:
        """The environment phase of a container run (its facts once the image is ready)."""
        facts = self.facts.to_dict() if self.facts is not None else {"image": self.image}
        return {"action": CONTAINER, **facts}


CONTAINER = "container"  # the environment phase's action for a container run


@dataclass
class Setup:
    """What the script runs with, and the phases to record (result.json, the run item)."""

    python: str
    environment: PreparedEnvironment | None  # None for a container run: the image is its own
    gpu: GpuReport | None
    image: ImagePreparation | None = None

    def environment_phase(self) -> dict[str, Any] | None:
        if self.image is not None:
            return self.image.to_dict()
        return self.environment.to_dict() if self.environment is not None else None

    def phases(self) -> dict[str, Any]:
        return {
            "environment": self.environment_phase(),
            "gpu": self.gpu.to_dict() if self.gpu is not None else None,
        }


def image_python(
    config: AgentConfig, environ: dict[str, str], ami_id: str | None = None
) -> ImagePython:
    image = config.image
    return ImagePython(
        image=image.name,
        interpreter=local_interpreter(image.interpreter, environ),
        architecture=image.architecture,
        layered=image.layered,
        ami_id=ami_id,
    )


def booted_ami() -> str | None:
    """The AMI id IMDS gives; None (logged) when it does not answer, and the environment's cache
    key then goes without it rather than the attempt failing."""
    try:
        found = imds.ami_id(imds.ImdsClient(timeout=1.0))
    except imds.ImdsError as error:
        logger.warning("no AMI id from instance metadata (%s): cache key without it", error)
        return None
    if found is None:
        logger.warning("instance metadata has no ami-id: environment cache key without it")
    return found


def set_up(
    config: AgentConfig,
    s3: Any,
    home: Path,
    code_dir: Path,
    scratch: Path,
    log_path: Path,
    should_stop: Callable[[], bool],
    check: Callable[[], GpuReport] = check_gpus,
    ecr: Any = None,
) -> Setup:
    """GpuCheckFailed, EnvironmentFailed or EnvironmentInterrupted when it cannot be done (for a
    container run the image's own errors come from Setup.image.wait())."""
    gpu = check() if config.image.nvidia_gpus else None
    container = config.container
    if container is not None:
        if (code_dir / DEPENDENCY_FILE).is_file():
            logger.warning(
                "%s is not installed in a container run: the image's packages are used",
                DEPENDENCY_FILE,
            )
        pull = ImagePreparation(
            lambda: prepare_image(container, ecr, should_stop, log_path=log_path),
            container.image,
        )
        return Setup(container.interpreter, None, gpu, pull)
    prepared = prepare_environment(
        code_dir,
        image_python(config, dict(os.environ), booted_ami()),
        s3,
        config.bucket,
        home / "envs",
        scratch,
        log_path,
        lambda: find_uv(home),  # asked only when an environment is built with uv
        should_stop,
    )
    return Setup(prepared.python, prepared, gpu)
