"""The GPU check on GPU instance types: nvidia-smi must answer and list at least one GPU.

Names and the driver come from `nvidia-smi --query-gpu=name,driver_version --format=csv,noheader`
(one line per GPU), the CUDA version the driver supports from the header of plain `nvidia-smi`
(`| NVIDIA-SMI 570.86.15   Driver Version: 570.86.15   CUDA Version: 12.8 |`). A missing tool, a
non-zero exit, a timeout or no GPU at all is GpuCheckFailed; a header without a CUDA version only
leaves cuda_version None.
"""

from __future__ import annotations

import logging
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .errors import AgentError

logger = logging.getLogger(__name__)

QUERY_ARGS = ["--query-gpu=name,driver_version", "--format=csv,noheader"]
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)")
_MESSAGE_LIMIT = 300


class GpuCheckFailed(AgentError):
    """No working NVIDIA GPU; the message is one line saying why."""


@dataclass(frozen=True)
class GpuReport:
    driver_version: str
    cuda_version: str | None
    gpus: list[str]  # names, one per GPU

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_gpus(
    nvidia_smi: str = "nvidia-smi",
    run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    timeout: float = 15,  # it answers in about a second; a hung driver must not eat a notice
) -> GpuReport:
    """Ask nvidia-smi for the GPUs, the driver and its CUDA version; GpuCheckFailed when it
    cannot answer or lists no GPU."""
    listed = parse_gpu_query(_ask(nvidia_smi, QUERY_ARGS, run, timeout))
    if not listed:
        raise GpuCheckFailed("nvidia-smi lists no GPU")
    try:
        cuda = parse_cuda_version(_ask(nvidia_smi, [], run, timeout))
    except GpuCheckFailed as error:  # the GPUs answered: the CUDA version is only reported
        logger.warning("no CUDA version from nvidia-smi: %s", error)
        cuda = None
    return GpuReport(driver_version=listed[0][1], cuda_version=cuda, gpus=[n for n, _ in listed])


def parse_gpu_query(csv_text: str) -> list[tuple[str, str]]:
    """(name, driver_version) per line of `--query-gpu=name,driver_version --format=csv,noheader`
    output; lines that are not two fields are skipped."""
    found = []
    for line in csv_text.splitlines():
        if "," not in line:
            continue
        name, driver = (field.strip() for field in line.rsplit(",", 1))
        if name and driver:
            found.append((name, driver))
    return found


def parse_cuda_version(smi_header_text: str) -> str | None:
    """The `CUDA Version: 12.8` of plain nvidia-smi's header (None when absent or "N/A")."""
    match = _CUDA_VERSION.search(smi_header_text)
    return match.group(1) if match else None


def _ask(
    nvidia_smi: str,
    args: list[str],
    run: Callable[..., subprocess.CompletedProcess[str]],
    timeout: float,
) -> str:
    try:
        done = run(
            [nvidia_smi, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as error:
        raise GpuCheckFailed(f"{nvidia_smi} not found: no NVIDIA driver on this image") from error
    except subprocess.TimeoutExpired as error:
        last = _last_line(_text(error.stderr), _text(error.output))
        said = f": {last}" if last else ""
        raise GpuCheckFailed(f"{nvidia_smi} did not answer within {timeout:g} s{said}") from error
    except OSError as error:
        raise GpuCheckFailed(f"{nvidia_smi} cannot run: {error}") from error
    if done.returncode != 0:
        last = _last_line(done.stderr or "", done.stdout or "") or "no output"
        raise GpuCheckFailed(f"{nvidia_smi} failed (exit {done.returncode}): {last}")
    return done.stdout or ""


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value or ""


def _last_line(*texts: str) -> str:
    """The last non-empty line of the first text that has one, cut to one short line."""
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if lines:
            line = " ".join(lines[-1].split())
            return line if len(line) <= _MESSAGE_LIMIT else line[: _MESSAGE_LIMIT - 3] + "..."
    return ""
