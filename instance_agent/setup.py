"""The attempt's set-up phases before the script: a working GPU (on GPU instance types), then the
script's Python environment. Either failing ends the attempt `environment-failed`.

The GPU check comes first: it takes a second, and a dead driver should not cost an install.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import imds
from .config import AgentConfig, local_interpreter
from .environment import ImagePython, PreparedEnvironment, prepare_environment
from .gpu import GpuReport, check_gpus
from .uv_tool import find_uv

logger = logging.getLogger(__name__)


@dataclass
class Setup:
    """What the script runs with, and the phases to record (result.json, the run item)."""

    python: str
    environment: PreparedEnvironment
    gpu: GpuReport | None

    def phases(self) -> dict[str, Any]:
        return {
            "environment": self.environment.to_dict(),
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
) -> Setup:
    """GpuCheckFailed, EnvironmentFailed or EnvironmentInterrupted when it cannot be done."""
    gpu = check() if config.image.nvidia_gpus else None
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
