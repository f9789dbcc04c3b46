"""OnSweepRunFailed: in a stop_on_failure sweep, stop the sweep once more runs failed than it
tolerates."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweep_stopping import on_sweep_run_failed
from lambdas.models.sweep_summary import SweepRunFailedInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=SweepRunFailedInput)
def lambda_handler(event: SweepRunFailedInput, context: LambdaContext) -> dict[str, Any]:
    output = on_sweep_run_failed(
        event,
        wiring.runs_table(),
        SweepFiles(wiring.s3(), lambda_env().BUCKET_NAME),
        wiring.ssm_commands(),
        wiring.utc_now().isoformat(),
    )
    logger.info(
        "sweep run failed",
        extra={"sweep_id": event.sweep_id, "run_id": event.run_id, **output.model_dump()},
    )
    return output.model_dump(mode="json")
