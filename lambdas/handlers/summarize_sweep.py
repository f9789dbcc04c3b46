"""SummarizeSweep: every run's outcome, the best run, the verdict; written to
sweeps/<id>/summary.json, returned as a digest."""

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.integrations.train_run_executions import TrainRunExecutions
from lambdas.logic.sweep_results import summarize_sweep
from lambdas.models.sweep_summary import SummarizeSweepInput
from lambdas.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)
@event_parser(model=SummarizeSweepInput)
def lambda_handler(event: SummarizeSweepInput, context: LambdaContext) -> dict[str, Any]:
    digest = summarize_sweep(
        event.state,
        wiring.runs_table(),
        TrainRunExecutions(wiring.sfn(), event.train_run_state_machine_arn).describe,
        SweepFiles(wiring.s3(), lambda_env().BUCKET_NAME),
        wiring.utc_now(),
    )
    logger.info(digest.message, extra={"sweep_id": digest.sweep_id, "verdict": digest.verdict})
    return digest.model_dump(mode="json")
