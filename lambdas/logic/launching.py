"""LaunchInstance: start the attempt's instance, once, on the best option that has capacity."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from lambdas.dal.runs_table import RunsTable
from lambdas.env import LambdaEnv
from lambdas.errors import CapacityUnavailable, RunNotLive
from lambdas.integrations.ec2_fleet import CapacityRefused, Ec2Fleet, LaunchedInstance, run_tags
from lambdas.logic.images import choose_image
from lambdas.logic.launch_plan import LaunchOption, client_token, launch_plan, summarize_refusals
from lambdas.logic.stopping import end_starting_attempt_if_stopped
from lambdas.models.run_record import Attempt
from lambdas.models.steps import ImageInfo, InstanceInfo, PreviousAttempt, RunContext
from lambdas.observability import logger

# IMDSv2 only; hop limit 2 lets a container on the instance reach IMDS, no further.
METADATA_OPTIONS = {
    "HttpTokens": "required",
    "HttpEndpoint": "enabled",
    "HttpPutResponseHopLimit": 2,
    "InstanceMetadataTags": "enabled",
}


# Why an option was passed over without asking EC2.
NOT_TRIED_IN_TIME = "not tried (launch time budget)"


@dataclass(frozen=True)
class LaunchBudget:
    """How long the launch may keep trying options, from the Lambda's remaining time."""

    remaining_ms: Callable[[], int]
    # Spot options stop below this when on-demand may follow, so on-demand is still tried: a few
    # calls (each bounded by the launch client's 5 s connect and 15 s read timeouts), recording
    # the attempt and returning, inside LaunchInstance's 60 s.
    on_demand_reserve_ms: int = 25_000
    # No call starts below this: one slow RunInstances and recording the attempt must still fit.
    last_call_reserve_ms: int = 10_000

    @staticmethod
    def unlimited() -> LaunchBudget:
        return LaunchBudget(lambda: 2**62)


def run_instances_request(
    run: RunContext,
    option: LaunchOption,
    env: LambdaEnv,
    image_id: str,
    root_device: str,
) -> dict[str, Any]:
    """The RunInstances call for one option (pure, so its security settings are testable)."""
    request: dict[str, Any] = {
        "LaunchTemplate": {"LaunchTemplateId": env.LAUNCH_TEMPLATE_ID, "Version": "$Default"},
        "ImageId": image_id,
        "InstanceType": option.instance_type,
        "SubnetId": option.subnet_id,
        "MinCount": 1,
        "MaxCount": 1,
        "ClientToken": client_token(run.run_id, run.attempt, option),
        "MetadataOptions": METADATA_OPTIONS,
        "BlockDeviceMappings": [
            {
                "DeviceName": root_device,
                "Ebs": {
                    "VolumeSize": run.spec.volume_gb,
                    "VolumeType": "gp3",
                    "Encrypted": True,
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": kind, "Tags": run_tags(run.run_id, run.attempt)}
            for kind in ("instance", "volume")
        ],
    }
    if env.ASSOCIATE_PUBLIC_IP:
        # runctl:publicIp (stacks/config.py): AssociatePublicIpAddress exists only on a network
        # interface, which must then carry the subnet and group too (the template has no group).
        del request["SubnetId"]
        request["NetworkInterfaces"] = [
            {
                "DeviceIndex": 0,
                "SubnetId": option.subnet_id,
                "Groups": [env.SECURITY_GROUP_ID],
                "AssociatePublicIpAddress": env.ASSOCIATE_PUBLIC_IP == "true",
                "DeleteOnTermination": True,
            }
        ]
    if option.market == "spot":
        request["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {
                "SpotInstanceType": "one-time",
                "InstanceInterruptionBehavior": "terminate",
            },
        }
    return request


def launch_attempt(
    run: RunContext,
    env: LambdaEnv,
    fleet: Ec2Fleet,
    table: RunsTable,
    now: str,
    ready_timeout_seconds: int,
    previous: PreviousAttempt | None = None,
    budget: LaunchBudget | None = None,
) -> InstanceInfo:
    # A retried invocation finds the instance the first one launched (ClientToken alone is not
    # enough: each option has its own token, and the emulator ignores tokens).
    images = attempt_images(run, fleet)
    existing = fleet.attempt_instances(run.run_id, run.attempt)
    refused: list[str] = []
    if existing:
        launched = existing[0]
        logger.info("attempt already launched", extra={"instance_id": launched.instance_id})
        # The first call recorded its refusals with the attempt, unless it died before: then
        # they are unknown and the record keeps whatever it has.
        recorded_before = table.get(run.run_id)
        if recorded_before is not None and str(run.attempt) in recorded_before.attempts:
            refused = recorded_before.attempts[str(run.attempt)].refused or []
    else:
        # No instance for a run the user stopped.
        end_starting_attempt_if_stopped(
            table, run.run_id, run.attempt, previous, datetime.fromisoformat(now).timestamp()
        )
        launched, refused = _launch_first_available(
            run, env, fleet, images, budget or LaunchBudget.unlimited()
        )
    recorded = table.start_attempt(
        run.run_id,
        Attempt(
            number=run.attempt,
            instance_id=launched.instance_id,
            instance_type=launched.instance_type,
            availability_zone=launched.availability_zone,
            market=launched.market,
            started_at=now,
            refused=refused or None,
        ),
        now,
    )
    if not recorded:
        # FinalizeRun (via Catch) terminates the instance: it carries the run's tags.
        raise RunNotLive(f"run {run.run_id} is no longer live; not starting attempt {run.attempt}")
    # From the instance's own launch time, so a retried call does not move the deadline.
    return InstanceInfo(
        instance_id=launched.instance_id,
        instance_type=launched.instance_type,
        availability_zone=launched.availability_zone,
        market=launched.market,
        launched_at=launched.launch_time.isoformat(),
        ready_deadline=launched.launch_time.timestamp() + ready_timeout_seconds,
        image=images[launched.instance_type],
    )


def attempt_images(run: RunContext, fleet: Ec2Fleet) -> dict[str, ImageInfo]:
    """The image and interpreter each allowed instance type would run (one EC2 call)."""
    spec = run.spec
    infos = fleet.instance_types(list(spec.instance_types or []))
    return {name: choose_image(spec.image, spec.interpreter, info) for name, info in infos.items()}


def _launch_first_available(
    run: RunContext,
    env: LambdaEnv,
    fleet: Ec2Fleet,
    images: dict[str, ImageInfo],
    budget: LaunchBudget,
) -> tuple[LaunchedInstance, list[str]]:
    """The first option EC2 launches, and what was refused (or not tried in time) before it."""
    plan = launch_plan(run.spec, fleet.subnets(env.SUBNET_IDS), run.avoid_placements)
    on_demand_follows = any(option.market == "on-demand" for option in plan)
    amis: dict[str, tuple[str, str]] = {}
    refusals: list[tuple[LaunchOption, str]] = []
    for option in plan:
        reserve = (
            budget.on_demand_reserve_ms
            if option.market == "spot" and on_demand_follows
            else budget.last_call_reserve_ms
        )
        if budget.remaining_ms() < reserve:
            refusals.append((option, NOT_TRIED_IN_TIME))
            continue
        if option.instance_type not in amis:
            amis[option.instance_type] = fleet.resolve_image(images[option.instance_type])
        image_id, root_device = amis[option.instance_type]
        request = run_instances_request(run, option, env, image_id, root_device)
        try:
            launched = fleet.run_instance(request)
        except CapacityRefused as refused:
            refusals.append((option, refused.code))
            logger.info("no capacity, trying the next option", extra={"option": option.describe()})
            continue
        logger.info(
            "launched", extra={"instance_id": launched.instance_id, "option": option.describe()}
        )
        return launched, summarize_refusals(refusals)
    raise CapacityUnavailable(
        "no capacity for any allowed option: " + "; ".join(summarize_refusals(refusals) or ["none"])
    )
