"""ReapOrphans: every 5 minutes, terminate runctl instances no live run owns and end runs over
their max runtime. The schedule's event carries nothing the reaper needs."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from lambdas import wiring
from lambdas.env import lambda_env
from lambdas.integrations.aws_clients import aws_client
from lambdas.integrations.metrics_files import MetricsFiles
from lambdas.integrations.spot_prices import SpotPriceHistory
from lambdas.logic.reaping import ReapIncomplete, reap
from lambdas.observability import logger, metrics, tracer


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler(capture_response=False)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    env = lambda_env()
    summary = reap(
        wiring.ec2_fleet(),
        wiring.runs_table(),
        wiring.sfn(),
        wiring.utc_now(),
        grace_seconds=env.REAPER_GRACE_SECONDS,
        metrics_files=MetricsFiles(wiring.s3(), env.BUCKET_NAME),
        prices=SpotPriceHistory(aws_client("ec2")),
    )
    counts = {
        "ReapedInstances": summary.terminated,
        "ReapedCancelledRuns": summary.cancelled_runs,
        "ReapedLimitExceededRuns": summary.limit_exceeded_runs,
        "ReaperFailures": summary.failures,
    }
    for name, items in counts.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=len(items))
    logger.info("reaper pass done", extra={**summary.as_dict(), "failures": summary.failures})
    if summary.failures:
        # Fail the invocation so its on-failure destination sees it; the rest was done.
        raise ReapIncomplete("; ".join(summary.failures))
    return summary.as_dict()
