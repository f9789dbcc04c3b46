"""PrepareSweepRun: one sweep run's RunSpec, or `start: false` once the sweep was stopped."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.logic.sweeps import prepare_sweep_run
from lambdas.models.sweep_summary import PrepareSweepRunInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=PrepareSweepRunInput)
def lambda_handler(event: PrepareSweepRunInput, context: LambdaContext) -> dict[str, Any]:
    files = SweepFiles(wiring.s3(), lambda_env().BUCKET_NAME)
    return prepare_sweep_run(event, files).model_dump(mode="json")
