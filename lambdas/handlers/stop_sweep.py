"""StopSweep: invoked by the client (`runctl sweeps cancel`). The sweep starts no more runs and
its running ones stop gracefully; the Sweep execution then ends Runctl.SweepCancelled."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweep_stopping import cancel_sweep
from lambdas.models.sweep_summary import StopSweepInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=StopSweepInput)
def lambda_handler(event: StopSweepInput, context: LambdaContext) -> dict[str, Any]:
    result = cancel_sweep(
        event.sweep_id,
        wiring.runs_table(),
        SweepFiles(wiring.s3(), lambda_env().BUCKET_NAME),
        wiring.ssm_commands(),
        wiring.utc_now().isoformat(),
    )
    logger.info(result.message, extra={"sweep_id": result.sweep_id})
    return result.model_dump(mode="json")
