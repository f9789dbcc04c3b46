"""ExpandSweep: check the SweepSpec, expand it into runs, write the plan; SweepSpecInvalid if
anything is wrong (nothing has started)."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweeps import expand_sweep
from lambdas.models.sweep_summary import ExpandSweepInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=ExpandSweepInput)
def lambda_handler(event: ExpandSweepInput, context: LambdaContext) -> dict[str, Any]:
    env = lambda_env()
    plan = expand_sweep(
        event, env, wiring.s3(), wiring.ec2(), SweepFiles(wiring.s3(), env.BUCKET_NAME)
    )
    logger.info("sweep planned", extra={"sweep_id": plan.sweep_id, "runs": plan.total_runs})
    return plan.model_dump(mode="json")
