"""An EC2 resource's tags looked up by its id, not by scanning every tag in the region.

moto 5.2.5's `TaggedEC2Resource.get_tags` asks `describe_tags` with a resource-id filter, which
walks every tag of every resource; DescribeInstances with a tag filter (how LaunchInstance and
FinalizeRun find a run's instances) does that once per instance. So each call costs instances x
tags, and a local sweep slowed down as it went: at 500 runs, 43% of the emulator's CPU was
there (py-spy, session 6), each run slower than the one before. AWS answers from an index;
this reads moto's own tag table by key, with the same result (moto's filter is an exact match).
The replacement takes moto's `self` first and is listed in `PATCHES` for the Emulator.
"""

from __future__ import annotations

from typing import Any

from moto.ec2.models.core import TaggedEC2Resource
from moto.ec2.utils import EC2_PREFIX_TO_RESOURCE, get_prefix


def get_tags(resource: TaggedEC2Resource) -> list[dict[str, str]]:
    resource_id = getattr(resource, "id", None)
    if not resource_id:
        return []
    backend: Any = getattr(resource, "ec2_backend")  # noqa: B009 - moto sets it untyped
    tags: dict[str, str] = backend.tags.get(resource_id, {})
    resource_type = EC2_PREFIX_TO_RESOURCE.get(get_prefix(resource_id), "")
    return [
        {"resource_id": resource_id, "key": key, "value": value, "resource_type": resource_type}
        for key, value in tags.items()
    ]


PATCHES = ((TaggedEC2Resource, "get_tags", get_tags),)
