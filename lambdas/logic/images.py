"""Which machine image an attempt boots, and which Python runs the script on it.

An image is an alias (`al2023`, `dlami-pytorch`) or an AMI id. A RunSpec that names none gets one
per instance type: the Deep Learning AMI with PyTorch on NVIDIA GPU types (its driver, CUDA and
CUDA torch), Amazon Linux 2023 elsewhere. The interpreter follows the image unless the RunSpec
sets one. Pure: the instance type facts come from lambdas/integrations/instance_types.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from lambdas.models.steps import ImageInfo

X86_64 = "x86_64"
ARM64 = "arm64"
AL2023 = "al2023"
DLAMI_PYTORCH = "dlami-pytorch"

# Public SSM parameters naming the newest AMI of each alias, by CPU architecture. The DLAMI's
# names follow /aws/service/deeplearning/ami/<arch>/<DLAMI name without "deep", "learning",
# "ami">/latest/ami-id, and the ARM64 DLAMIs carry "ARM64" in their names, so the arm64 name is not
# the x86_64 one with another architecture (sources in tests/unit/lambdas/test_images.py).
# PyTorch 2.13 is the newest DLAMI for x86_64 (2026-10); ARM64's newest is 2.11.
IMAGE_PARAMETERS: dict[tuple[str, str], str] = {
    (AL2023, X86_64): "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64",
    (AL2023, ARM64): "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64",
    (DLAMI_PYTORCH, X86_64): (
        "/aws/service/deeplearning/ami/x86_64/"
        "oss-nvidia-driver-gpu-pytorch-2.13-amazon-linux-2023/latest/ami-id"
    ),
    (DLAMI_PYTORCH, ARM64): (
        "/aws/service/deeplearning/ami/arm64/"
        "arm64-oss-nvidia-driver-gpu-pytorch-2.11-amazon-linux-2023/latest/ami-id"
    ),
}

# The image's own Python: AL2023's system python3 (3.9), the DLAMI's PyTorch environment.
IMAGE_PYTHONS = {AL2023: "python3", DLAMI_PYTORCH: "/opt/pytorch/bin/python"}
CUSTOM_AMI_PYTHON = "python3"
# Images whose Python ships packages worth reusing (CUDA torch): the script's environment is
# layered over them and installed with pip, which sees them (docs/architecture.md, "The script's
# environment"). An AMI of the user's own may too, so it counts as layered.
PLAIN_IMAGES = frozenset({AL2023})
# Images that ship the NVIDIA driver.
DRIVER_IMAGES = frozenset({DLAMI_PYTORCH})


@dataclass(frozen=True)
class InstanceTypeInfo:
    """What runctl needs to know of an EC2 instance type."""

    name: str
    architecture: str  # x86_64 | arm64
    nvidia_gpus: int = 0


def is_ami_id(image: str) -> bool:
    return image.startswith("ami-")


def choose_image(image: str | None, interpreter: str | None, info: InstanceTypeInfo) -> ImageInfo:
    """The RunSpec's image (or the default for this instance type) and its interpreter."""
    chosen = image or (DLAMI_PYTORCH if info.nvidia_gpus else AL2023)
    default_python = IMAGE_PYTHONS.get(chosen, CUSTOM_AMI_PYTHON)
    return ImageInfo(
        name=chosen,
        interpreter=interpreter or default_python,
        architecture=info.architecture,
        layered=chosen not in PLAIN_IMAGES,
        # Checked with nvidia-smi only where a driver is known to be installed: AL2023 has none
        # (the script runs on the CPU there), and an AMI of your own is yours to vouch for.
        nvidia_gpus=info.nvidia_gpus if chosen in DRIVER_IMAGES else 0,
    )


def image_parameter(image: str, architecture: str) -> str:
    """The public SSM parameter that names the newest AMI of an alias on this architecture."""
    return IMAGE_PARAMETERS[(image, architecture)]


def incompatibility(
    image: str | None, info: InstanceTypeInfo, ami_architecture: str | None = None
) -> str | None:
    """Why this image cannot boot usefully on this instance type, or None when it can."""
    if image == DLAMI_PYTORCH and not info.nvidia_gpus:
        return (
            f"image {DLAMI_PYTORCH!r} needs an NVIDIA GPU instance type and {info.name} has "
            f"none: use {AL2023!r}, or leave the image unset to pick one per instance type"
        )
    if ami_architecture is not None and ami_architecture != info.architecture:
        return (
            f"AMI {image} is built for {ami_architecture} and {info.name} runs {info.architecture}"
        )
    return None
