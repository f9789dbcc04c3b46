"""Image and interpreter per instance type, and the public SSM parameter names per architecture.

Sources for the parameter names (read 2026-12-03):
- DLAMI: https://docs.aws.amazon.com/dlami/latest/devguide/find-dlami-id.html — the name is
  /aws/service/deeplearning/ami/$architecture/$ami_type/latest/ami-id, architecture x86_64 or
  arm64, ami_type = the DLAMI's name without "deep", "learning" and "ami". The names, from the
  release notes: "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.13 (Amazon Linux 2023)"
  (https://docs.aws.amazon.com/dlami/latest/devguide/aws-deep-learning-ami-gpupt213oss-al2023-2026-10-05.html,
  x86_64, python_location /opt/pytorch/bin/python) and "Deep Learning ARM64 AMI OSS Nvidia Driver
  GPU PyTorch 2.11 (Amazon Linux 2023)"
  (https://docs.aws.amazon.com/dlami/latest/devguide/aws-deep-learning-ami-gpupt211ossarm64-al2023-2026-10-09.html,
  aarch64, the newest ARM64 PyTorch DLAMI).
- AL2023: https://docs.aws.amazon.com/linux/al2023/ug/ec2.html —
  /aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64 (and -arm64).
"""

from __future__ import annotations

import re

import pytest

from lambdas.logic.images import (
    AL2023,
    ARM64,
    DLAMI_PYTORCH,
    IMAGE_PARAMETERS,
    X86_64,
    InstanceTypeInfo,
    choose_image,
    image_parameter,
    incompatibility,
)

G5 = InstanceTypeInfo("g5.xlarge", X86_64, nvidia_gpus=1)
G5G = InstanceTypeInfo("g5g.xlarge", ARM64, nvidia_gpus=1)
M5 = InstanceTypeInfo("m5.large", X86_64)
C7G = InstanceTypeInfo("c7g.large", ARM64)


def _ami_type(dlami_name: str) -> str:
    """The documented rule: drop "deep", "learning", "ami"; lower-case, words joined by '-'."""
    words = re.sub(r"[()]", "", dlami_name).split()
    return "-".join(w.lower() for w in words if w.lower() not in {"deep", "learning", "ami"})


@pytest.mark.parametrize(
    ("architecture", "dlami_name"),
    [
        (X86_64, "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.13 (Amazon Linux 2023)"),
        (ARM64, "Deep Learning ARM64 AMI OSS Nvidia Driver GPU PyTorch 2.11 (Amazon Linux 2023)"),
    ],
)
def test_dlami_parameter_names_follow_the_documented_rule(architecture, dlami_name):
    expected = f"/aws/service/deeplearning/ami/{architecture}/{_ami_type(dlami_name)}/latest/ami-id"

    assert image_parameter(DLAMI_PYTORCH, architecture) == expected


def test_arm64_dlami_name_is_not_the_x86_name_with_another_architecture():
    x86 = image_parameter(DLAMI_PYTORCH, X86_64)
    arm = image_parameter(DLAMI_PYTORCH, ARM64)

    assert arm != x86.replace("x86_64", "arm64")
    assert "/arm64/arm64-oss-nvidia-driver-gpu-pytorch-" in arm


def test_al2023_parameter_names_per_architecture():
    assert image_parameter(AL2023, X86_64).endswith("/al2023-ami-kernel-default-x86_64")
    assert image_parameter(AL2023, ARM64).endswith("/al2023-ami-kernel-default-arm64")
    assert set(IMAGE_PARAMETERS) == {
        (i, a) for i in (AL2023, DLAMI_PYTORCH) for a in (X86_64, ARM64)
    }


@pytest.mark.parametrize(
    ("info", "image", "interpreter", "layered"),
    [
        (G5, DLAMI_PYTORCH, "/opt/pytorch/bin/python", True),
        (G5G, DLAMI_PYTORCH, "/opt/pytorch/bin/python", True),
        (M5, AL2023, "python3", False),
        (C7G, AL2023, "python3", False),
    ],
)
def test_given_no_image_then_gpu_types_get_the_dlami_and_cpu_types_al2023(
    info, image, interpreter, layered
):
    chosen = choose_image(None, None, info)

    assert (chosen.name, chosen.interpreter, chosen.layered) == (image, interpreter, layered)
    assert chosen.architecture == info.architecture
    assert chosen.nvidia_gpus == info.nvidia_gpus


@pytest.mark.parametrize("image", [AL2023, "ami-0123456789abcdef0"])
def test_given_an_image_without_a_known_driver_on_a_gpu_type_then_no_gpu_check(image):
    # AL2023 has no NVIDIA driver: nvidia-smi would fail every attempt; the script uses the CPU.
    assert choose_image(image, None, G5).nvidia_gpus == 0


def test_given_an_interpreter_then_it_wins_over_the_image_default():
    chosen = choose_image(DLAMI_PYTORCH, "/usr/bin/python3.11", G5)

    assert chosen.interpreter == "/usr/bin/python3.11"


def test_given_an_ami_id_then_python3_runs_the_script_and_packages_are_layered():
    chosen = choose_image("ami-0123456789abcdef0", None, M5)

    assert (chosen.interpreter, chosen.layered) == ("python3", True)


def test_dlami_on_a_cpu_type_is_incompatible_and_al2023_on_a_gpu_type_is_not():
    assert "needs an NVIDIA GPU instance type and m5.large has none" in str(
        incompatibility(DLAMI_PYTORCH, M5)
    )
    assert incompatibility(AL2023, G5) is None
    assert incompatibility(None, M5) is None


def test_an_ami_of_another_architecture_is_incompatible():
    problem = incompatibility("ami-0123456789abcdef0", M5, ami_architecture=ARM64)

    assert problem == "AMI ami-0123456789abcdef0 is built for arm64 and m5.large runs x86_64"
    assert incompatibility("ami-0123456789abcdef0", C7G, ami_architecture=ARM64) is None
