"""In the emulator a SendCommand runs on the instances it names and no others. moto 5.2.5 added
every instance in the region to a command without Targets, so each run's agent start also ran on
every other live local instance."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from runctl.local.emulator import REGION, Emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))) as running:
        yield running


def test_a_command_for_one_instance_runs_on_that_instance_only(emulator: Emulator):
    ec2 = boto3.client("ec2", region_name=REGION)
    ssm = boto3.client("ssm", region_name=REGION)
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    launched = ec2.run_instances(ImageId=image, MinCount=2, MaxCount=2, InstanceType="m5.large")
    first, second = (item["InstanceId"] for item in launched["Instances"])

    command = ssm.send_command(
        InstanceIds=[first],
        DocumentName="AWS-RunShellScript",
        Parameters={"commands": ["touch ran-here"]},
    )["Command"]

    assert command["InstanceIds"] == [first]
    with pytest.raises(ssm.exceptions.InvocationDoesNotExist):
        ssm.get_command_invocation(CommandId=command["CommandId"], InstanceId=second)
    ec2.terminate_instances(InstanceIds=[first, second])
