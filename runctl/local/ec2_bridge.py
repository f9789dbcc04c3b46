"""EC2 for local mode: each instance moto launches becomes a LocalInstance; terminate ends it."""

from __future__ import annotations

from typing import Any

from moto.ec2.models.instances import Instance, InstanceBackend

from runctl.local.instances import LocalFleet


class Ec2Bridge:
    def __init__(self, fleet: LocalFleet) -> None:
        self.fleet = fleet
        self._original_run = InstanceBackend.run_instances
        self._original_terminate = Instance.terminate

    def run_instances(self, backend: InstanceBackend, *args: Any, **kwargs: Any) -> Any:
        reservation = self._original_run(backend, *args, **kwargs)
        for instance in reservation.instances:
            self.fleet.launch(
                instance.id,
                instance.instance_type,
                str(instance.placement.zone),
                instance.image_id or None,  # the launch template's when the request named none
            )
        return reservation

    def terminate(self, instance: Instance) -> Any:
        previous = self._original_terminate(instance)
        self.fleet.terminate(instance.id)
        return previous
