"""OnInstanceEvent: spot warnings and rebalance notices reach the agent; a lost instance fails
its task at once. EventBridge cannot match on instance tags, so the logic checks them."""

from datetime import timedelta
from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.integrations.aws_clients import aws_client
from lambdas.logic.instance_events import SPOT_WARNING, InstanceEvent, handle_instance_event
from lambdas.observability import logger, tracer

# AWS terminates a spot instance two minutes after the warning.
SPOT_NOTICE = timedelta(minutes=2)


def instance_event(event: EventBridgeModel) -> InstanceEvent:
    detail: dict[str, Any] = dict(event.detail)  # type: ignore[arg-type]  # EC2 sends an object
    action_time = None
    if event.detail_type == SPOT_WARNING:
        action_time = (event.time + SPOT_NOTICE).isoformat()
    return InstanceEvent(
        detail_type=event.detail_type,
        instance_id=str(detail["instance-id"]),
        time=event.time.isoformat(),
        state=detail.get("state"),
        action_time=action_time,
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=EventBridgeModel)
def lambda_handler(event: EventBridgeModel, context: LambdaContext) -> dict[str, Any]:
    parsed = instance_event(event)
    action = handle_instance_event(
        parsed,
        aws_client("ec2"),
        wiring.runs_table(),
        wiring.ssm_commands(),
        aws_client("stepfunctions"),
    )
    logger.info(action, extra={"instance_id": parsed.instance_id, "type": parsed.detail_type})
    return {"instance_id": parsed.instance_id, "action": action}
