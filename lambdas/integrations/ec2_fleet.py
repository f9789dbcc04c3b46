"""EC2 calls for launching, finding and terminating the instances runctl owns."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotocoreConnectionError

from lambdas.constants import TAG_ATTEMPT, TAG_MANAGED, TAG_RUN_ID
from lambdas.errors import NoDefaultVpc
from lambdas.integrations.instance_types import describe_instance_types
from lambdas.logic.images import InstanceTypeInfo, image_parameter, is_ami_id
from lambdas.models.steps import ImageInfo

# EC2 error codes that mean "not here, not now": the next launch option is the retry.
CAPACITY_ERROR_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientFreeAddressesInSubnet",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "Unsupported",  # the instance type is not offered in this zone
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
    }
)
# Failures worth the same call again (with its ClientToken, so EC2 launches at most once).
_THROTTLING_CODES = frozenset({"RequestLimitExceeded", "Throttling", "ThrottlingException"})

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]
# States an instance can still cost money from and be terminated in (shutting-down is on its way).
REAPABLE_STATES = ["pending", "running", "stopping", "stopped"]


class CapacityRefused(Exception):
    """EC2 has no capacity for this option now (its error code in `code`)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@dataclass(frozen=True)
class Subnet:
    subnet_id: str
    availability_zone: str


@dataclass(frozen=True)
class LaunchedInstance:
    instance_id: str
    instance_type: str
    availability_zone: str
    market: str
    state: str
    launch_time: datetime


@dataclass(frozen=True)
class ManagedInstance:
    """A runctl-tagged instance as the reaper sees it: its tags say which run and attempt."""

    instance_id: str
    state: str
    launch_time: datetime
    tags: dict[str, str]


def _launched(instance: dict[str, Any]) -> LaunchedInstance:
    return LaunchedInstance(
        instance_id=instance["InstanceId"],
        instance_type=instance["InstanceType"],
        availability_zone=instance["Placement"]["AvailabilityZone"],
        market="spot" if instance.get("InstanceLifecycle") == "spot" else "on-demand",
        state=instance["State"]["Name"],
        launch_time=instance["LaunchTime"],
    )


class Ec2Fleet:
    """The instances of runctl runs, found by their tags."""

    def __init__(self, ec2: Any, ssm: Any, launches: Any = None) -> None:
        self.ec2 = ec2
        self.ssm = ssm
        # RunInstances goes through a client that makes one attempt per call (see run_instance).
        self.launches = launches or ec2

    def subnets(self, subnet_ids: tuple[str, ...]) -> list[Subnet]:
        """The configured subnets, or the default VPC's default subnets when none are configured."""
        if subnet_ids:
            response = self.ec2.describe_subnets(SubnetIds=list(subnet_ids))
            by_id = {item["SubnetId"]: item for item in response["Subnets"]}
            return [Subnet(sid, by_id[sid]["AvailabilityZone"]) for sid in subnet_ids]
        response = self.ec2.describe_subnets(
            Filters=[{"Name": "default-for-az", "Values": ["true"]}]
        )
        found = sorted(response["Subnets"], key=lambda item: item["AvailabilityZone"])
        if not found:
            # Deleted after the deploy (make deploy checks for it before): say so, rather than
            # "no capacity for any allowed option" over an empty list.
            raise NoDefaultVpc(
                "the region has no default VPC (no default subnets) and the stack names no "
                "subnets: deploy again with -c runctl:vpcId=... (and runctl:subnetIds)"
            )
        return [Subnet(item["SubnetId"], item["AvailabilityZone"]) for item in found]

    def resolve_image(self, choice: ImageInfo) -> tuple[str, str]:
        """(AMI id, root device name) of the chosen image alias or AMI id."""
        if is_ami_id(choice.name):
            image_id = choice.name
        else:
            parameter = image_parameter(choice.name, choice.architecture)
            image_id = self.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        described = self.ec2.describe_images(ImageIds=[image_id])["Images"]
        root_device = described[0].get("RootDeviceName", "/dev/xvda") if described else "/dev/xvda"
        return image_id, root_device

    def instance_types(self, names: list[str]) -> dict[str, InstanceTypeInfo]:
        return describe_instance_types(self.ec2, names)

    def attempt_instances(self, run_id: str, attempt: int | None = None) -> list[LaunchedInstance]:
        """Live instances tagged with this run (and attempt, when given)."""
        filters = [
            {"Name": f"tag:{TAG_RUN_ID}", "Values": [run_id]},
            {"Name": "instance-state-name", "Values": LIVE_STATES},
        ]
        if attempt is not None:
            filters.append({"Name": f"tag:{TAG_ATTEMPT}", "Values": [str(attempt)]})
        found: list[LaunchedInstance] = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(_launched(item) for item in reservation["Instances"])
        return found

    def managed_instances(self) -> list[ManagedInstance]:
        """Every pending, running, stopping or stopped instance tagged runctl:managed=true."""
        filters = [
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            {"Name": "instance-state-name", "Values": REAPABLE_STATES},
        ]
        found: list[ManagedInstance] = []
        for page in self.ec2.get_paginator("describe_instances").paginate(Filters=filters):
            for reservation in page["Reservations"]:
                found.extend(
                    ManagedInstance(
                        instance_id=item["InstanceId"],
                        state=item["State"]["Name"],
                        launch_time=item["LaunchTime"],
                        tags={tag["Key"]: tag["Value"] for tag in item.get("Tags", [])},
                    )
                    for item in reservation["Instances"]
                )
        return found

    def run_instance(self, request: dict[str, Any]) -> LaunchedInstance:
        """Launch one option, or raise CapacityRefused after a single call.

        EC2 answers InsufficientInstanceCapacity with HTTP 500, which the standard retry mode
        would retry with backoff (about 7 s per option); the next option is the better retry. So
        the first call makes one attempt, and only a failure worth repeating (throttling, another
        5xx, a dropped connection) is repeated on the retrying client, with the same ClientToken.
        """
        try:
            response = self._run(self.launches, request)
        except ClientError as error:
            if not _worth_repeating(error):
                raise
            response = self._run(self.ec2, request)
        except (BotocoreConnectionError, HTTPClientError):
            response = self._run(self.ec2, request)
        return _launched(response["Instances"][0])

    @staticmethod
    def _run(client: Any, request: dict[str, Any]) -> Any:
        try:
            return client.run_instances(**request)
        except ClientError as error:
            details = error.response.get("Error", {})
            if details.get("Code") in CAPACITY_ERROR_CODES:
                raise CapacityRefused(details["Code"], details.get("Message", "")) from error
            raise

    def describe(self, instance_id: str) -> dict[str, Any] | None:
        """The instance, or None while EC2 (eventually consistent) does not know it yet."""
        try:
            reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        except ClientError as error:
            if error.response["Error"]["Code"] == "InvalidInstanceID.NotFound":
                return None
            raise
        instances = [item for res in reservations for item in res["Instances"]]
        return instances[0] if instances else None

    def ssm_online(self, instance_id: str) -> bool:
        response = self.ssm.describe_instance_information(
            Filters=[{"Key": "InstanceIds", "Values": [instance_id]}]
        )
        return any(
            item.get("PingStatus") == "Online" for item in response["InstanceInformationList"]
        )

    def terminate(self, instance_ids: list[str]) -> None:
        if instance_ids:
            self.ec2.terminate_instances(InstanceIds=sorted(set(instance_ids)))


def _worth_repeating(error: ClientError) -> bool:
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return status >= 500 or error.response.get("Error", {}).get("Code") in _THROTTLING_CODES


def run_tags(run_id: str, attempt: int) -> list[dict[str, str]]:
    return [
        {"Key": TAG_MANAGED, "Value": "true"},
        {"Key": TAG_RUN_ID, "Value": run_id},
        {"Key": TAG_ATTEMPT, "Value": str(attempt)},
        {"Key": "Name", "Value": f"runctl-{run_id}"},
    ]
