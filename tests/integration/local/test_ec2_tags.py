"""In the emulator, an EC2 resource's tags are read by its id: DescribeInstances with a tag filter
finds the same instances as moto's own lookup, without scanning every tag per instance (what
made a long local sweep slower with each run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto.ec2.models import ec2_backends
from moto.ec2.models.tags import TagBackend

from runctl.local import ec2_tags
from runctl.local.emulator import REGION, Emulator

_ORIGINAL = ec2_tags.TaggedEC2Resource.get_tags  # moto's own, before the Emulator patches it
ACCOUNT = "123456789012"  # moto's default


@pytest.fixture(scope="module")
def ec2(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))):
        yield boto3.client("ec2", region_name=REGION)


def _launch(ec2: Any, run_id: str, count: int) -> list[str]:
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    reservation = ec2.run_instances(
        ImageId=image,
        MinCount=count,
        MaxCount=count,
        InstanceType="m5.large",
        TagSpecifications=[
            {
                "ResourceType": "instance",
                "Tags": [{"Key": "runctl:run-id", "Value": run_id}, {"Key": "team", "Value": "x"}],
            }
        ],
    )
    return [item["InstanceId"] for item in reservation["Instances"]]


def _tagged(ec2: Any, run_id: str) -> set[str]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": "tag:runctl:run-id", "Values": [run_id]}]
    )
    return {i["InstanceId"] for page in pages for r in page["Reservations"] for i in r["Instances"]}


def test_a_tag_filter_finds_exactly_the_tagged_instances_without_scanning_every_tag(ec2):
    # Given instances of two runs (one id a prefix of the other: the match must be exact)
    first = _launch(ec2, "run-1", 3)
    second = _launch(ec2, "run-10", 2)

    # When the instances of run-1 are asked for, counting scans of the whole tag table
    with mock.patch.object(TagBackend, "describe_tags", autospec=True) as scans:
        found = _tagged(ec2, "run-1")

    # Then exactly its instances come back, and no per-instance scan happened
    assert found == set(first)
    assert not set(second) & found
    assert scans.call_count == 0


def test_the_tags_read_by_id_are_the_ones_moto_would_list(ec2):
    (instance_id,) = _launch(ec2, "run-2", 1)
    instance = ec2_backends[ACCOUNT][REGION].get_instance(instance_id)

    assert ec2_tags.get_tags(instance) == _ORIGINAL(instance)
    assert {tag["key"] for tag in ec2_tags.get_tags(instance)} == {"runctl:run-id", "team"}
