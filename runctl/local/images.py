"""What local mode uses as each image's Python, so a script sees what it would see on AWS.

- `python3` (Amazon Linux 2023, and an AMI of your own): an empty virtualenv over the interpreter
  runctl's virtualenv was made from, so none of runctl's packages (nor whatever that machine's
  Python has installed) can be imported: AL2023's python3 has no numpy or torch either.
- `/opt/pytorch/bin/python` (the Deep Learning AMI): an empty virtualenv that lends
  torch and numpy (with what they need) from runctl's own environment, by symlink: the CPU build
  of torch stands in for the DLAMI's CUDA build, and a requirements file layered over it finds
  torch installed, as it would on the DLAMI, instead of downloading it.

The agent maps the image's interpreter path through RUNCTL_LOCAL_INTERPRETERS (a JSON object set
on local instances only). A GPU instance type locally has a stand-in `nvidia-smi` on its PATH that
reports one GPU, or fails like a broken driver when asked to (LocalFleet.broken_gpu_instances).
"""

from __future__ import annotations

import fcntl
import importlib.metadata as metadata
import json
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

from lambdas.logic.images import AL2023, DLAMI_PYTORCH, IMAGE_PYTHONS

INTERPRETERS_ENV = "RUNCTL_LOCAL_INTERPRETERS"
# What the DLAMI's PyTorch environment provides that local mode can lend.
DLAMI_PACKAGES = ("torch", "numpy")
_COMPLETE = ".runctl-image-complete"


def base_python() -> Path:
    """The interpreter behind runctl's virtualenv."""
    return Path(getattr(sys, "_base_executable", sys.executable))


def local_interpreters(images_root: Path) -> str:
    """JSON: image interpreter path -> the local stand-in that plays it."""
    return json.dumps(
        {
            IMAGE_PYTHONS[AL2023]: str(stand_in(images_root / AL2023, ())),
            IMAGE_PYTHONS[DLAMI_PYTORCH]: str(
                stand_in(images_root / DLAMI_PYTORCH, DLAMI_PACKAGES)
            ),
        }
    )


def stand_in(root: Path, lent: tuple[str, ...]) -> Path:
    """An image's Python: an empty virtualenv lending these distributions from runctl's own,
    made once per folder (locked: test workers share it)."""
    python = root / "bin" / "python"
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / _COMPLETE).exists():
            return python
        subprocess.run(
            [str(base_python()), "-m", "venv", "--clear", "--without-pip", str(root)],
            check=True,
            capture_output=True,
        )
        site_packages = Path(
            subprocess.run(
                [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        )
        for entry in sorted(_lent_entries(lent)):
            link = site_packages / entry.name
            if not link.exists():
                link.symlink_to(entry)
        (root / _COMPLETE).write_text("")
    return python


def _lent_entries(names: tuple[str, ...]) -> set[Path]:
    """The top-level site-packages entries of these distributions and what they require."""
    entries: set[Path] = set()
    seen: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # not installed here (torch is an extra): the stand-in lacks it too
        root = Path(str(dist.locate_file("")))
        for file in dist.files or []:
            top = file.parts[0]
            if top not in ("..", "__pycache__"):
                entries.add(root / top)
        for line in dist.requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                pending.append(requirement.name)
    return entries


def fake_nvidia_smi(bin_dir: Path) -> Path:
    """A stand-in nvidia-smi: one GPU, or a driver failure when RUNCTL_LOCAL_GPU_BROKEN is set."""
    script = bin_dir / "nvidia-smi"
    script.write_text(_FAKE_NVIDIA_SMI)
    script.chmod(0o755)
    return script


_FAKE_NVIDIA_SMI = """#!/bin/sh
# runctl local mode: stands in for the NVIDIA driver's tool on a GPU instance type.
if [ -n "$RUNCTL_LOCAL_GPU_BROKEN" ]; then
  echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. \
Make sure that the latest NVIDIA driver is installed and running." >&2
  exit 9
fi
case "$*" in
  *--query-gpu*) echo "runctl local stand-in GPU, 000.00.00" ;;
  *) echo "| NVIDIA-SMI 000.00.00   Driver Version: 000.00.00   CUDA Version: local |" ;;
esac
"""
