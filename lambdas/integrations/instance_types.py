"""EC2 facts about instance types and AMIs: architecture, NVIDIA GPUs, which types exist."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from lambdas.logic.images import ARM64, X86_64, InstanceTypeInfo

# EC2's answer when a DescribeInstanceTypes request names a type this region does not offer.
_UNKNOWN_TYPE_CODES = frozenset({"InvalidInstanceType"})


class UnknownInstanceTypes(Exception):
    """Instance types EC2 does not know in this region."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def _info(item: dict[str, Any]) -> InstanceTypeInfo:
    architectures = item["ProcessorInfo"]["SupportedArchitectures"]
    gpus = item.get("GpuInfo", {}).get("Gpus", [])
    return InstanceTypeInfo(
        name=item["InstanceType"],
        architecture=ARM64 if ARM64 in architectures else X86_64,
        nvidia_gpus=sum(gpu.get("Count", 0) for gpu in gpus if gpu.get("Manufacturer") == "NVIDIA"),
    )


def describe_instance_types(ec2: Any, names: list[str]) -> dict[str, InstanceTypeInfo]:
    """Each type's facts; UnknownInstanceTypes names every type the region does not offer."""
    wanted = sorted(set(names))
    try:
        found = ec2.describe_instance_types(InstanceTypes=wanted)["InstanceTypes"]
    except ClientError as error:
        if error.response["Error"]["Code"] not in _UNKNOWN_TYPE_CODES:
            raise
        # The error's text lists the culprits, but its wording is not a contract: ask per type.
        unknown = [name for name in wanted if not _exists(ec2, name)]
        raise UnknownInstanceTypes(unknown or wanted) from error
    return {item["InstanceType"]: _info(item) for item in found}


def _exists(ec2: Any, name: str) -> bool:
    try:
        ec2.describe_instance_types(InstanceTypes=[name])
    except ClientError as error:
        if error.response["Error"]["Code"] in _UNKNOWN_TYPE_CODES:
            return False
        raise
    return True


def ami_architecture(ec2: Any, image_id: str) -> str | None:
    """The AMI's architecture (x86_64 | arm64), or None when EC2 does not show it."""
    images = ec2.describe_images(ImageIds=[image_id])["Images"]
    if not images:
        return None
    architecture = images[0].get("Architecture")
    return str(architecture) if architecture in (X86_64, ARM64) else None
