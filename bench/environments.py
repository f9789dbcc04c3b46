"""The script's environment: installed cold versus restored from the S3 cache (what a resumed
attempt on a new instance does), for examples/requirements.txt over local mode's DLAMI stand-in
(pip, as on a GPU instance type) and a numpy-only file over the AL2023 stand-in (uv)."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from instance_agent.environment import ImagePython, prepare_environment
from lambdas.logic.images import AL2023, DLAMI_PYTORCH
from runctl.local.images import DLAMI_PACKAGES, stand_in

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SAMPLES = 3
UV = str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "uv")


def _timed(
    code: Path, image: ImagePython, s3: Any, bucket: str, root: Path, uv: str, action: str
) -> float:
    """Seconds prepare_environment took on a fresh instance (`root`), which did `action`."""
    (root / "scratch").mkdir(parents=True)
    # A new instance: the installers' download caches are empty too.
    caches = {"UV_CACHE_DIR": str(root / "uv-cache"), "PIP_CACHE_DIR": str(root / "pip-cache")}
    saved = {name: os.environ.get(name) for name in caches}
    os.environ.update(caches)
    try:
        started = time.monotonic()
        prepared = prepare_environment(
            code, image, s3, bucket, root / "envs", root / "scratch", root / "env.log", uv
        )
        elapsed = time.monotonic() - started
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    assert prepared.action == action, (prepared.action, action)
    return elapsed


def _pair(code: Path, image: ImagePython, scratch: Path, uv: str) -> dict[str, float]:
    """One cold install (empty cache) and one restore (fresh instance, warm cache) per sample."""
    cold, warm = [], []
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        for sample in range(SAMPLES):
            bucket = f"bench-envs-{sample}"
            s3.create_bucket(Bucket=bucket)  # an empty cache: the first prepare installs
            cold.append(
                _timed(code, image, s3, bucket, scratch / f"cold-{sample}", uv, "installed")
            )
            warm.append(_timed(code, image, s3, bucket, scratch / f"warm-{sample}", uv, "restored"))
    cold_median, warm_median = statistics.median(cold), statistics.median(warm)
    return {
        "install_seconds_median": cold_median,
        "restore_seconds_median": warm_median,
        "install_to_restore_ratio": cold_median / warm_median,
        "samples": SAMPLES,
    }


def environment_figures() -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        dlami = ImagePython(
            DLAMI_PYTORCH,
            str(stand_in(scratch / "images" / DLAMI_PYTORCH, DLAMI_PACKAGES)),
            "x86_64",
            layered=True,
        )
        al2023 = ImagePython(
            AL2023, str(stand_in(scratch / "images" / AL2023, ())), "x86_64", layered=False
        )
        numpy_only = scratch / "numpy-project"
        numpy_only.mkdir()
        (numpy_only / "requirements.txt").write_text("numpy\n")
        return {
            "examples_over_dlami_pip": _pair(EXAMPLES, dlami, scratch / "dlami", UV),
            "numpy_over_al2023_uv": _pair(numpy_only, al2023, scratch / "al2023", UV),
        }
