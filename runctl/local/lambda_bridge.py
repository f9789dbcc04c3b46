"""Routes moto's Lambda invocations to our handlers in-process (moto runs none without Docker)."""

from __future__ import annotations

import importlib
import json
import os
import threading
import traceback
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any

from moto.awslambda.models import LambdaFunction

from lambdas.env import lambda_env
from lambdas.observability import metrics
from runctl.local.iam.enforcer import acting_as

_env_lock = threading.Lock()
# Local mode disables Powertools' metrics (POWERTOOLS_METRICS_DISABLED): with nothing to publish
# it says so once on stderr, which tells a local user nothing.
warnings.filterwarnings("ignore", message="No application metrics to publish")


@dataclass
class LocalLambdaContext:
    """The parts of the Lambda context object that Powertools reads."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int = 256
    function_version: str = "$LATEST"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/local"
    log_stream_name: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


def _load_handler(dotted: str) -> Any:
    module_name, _, attribute = dotted.rpartition(".")
    return getattr(importlib.import_module(module_name), attribute)


def _apply_function_env(variables: dict[str, str]) -> None:
    # All our functions share one environment (lambdas/env.py), so setting it process-wide is safe.
    with _env_lock:
        if any(os.environ.get(key) != value for key, value in variables.items()):
            os.environ.update(variables)
            lambda_env.cache_clear()


def invoke_in_process(function: LambdaFunction, event: Any) -> tuple[bytes, bool]:
    """Call the function's handler; an exception becomes a function error, as on AWS."""
    _apply_function_env(dict(function.environment_vars or {}))
    context = LocalLambdaContext(function.function_name, function.function_arn)
    try:
        # Its AWS calls are signed as its own role (checked when IAM is enforced).
        with acting_as(str(function.handler)):
            result = _load_handler(str(function.handler))(event, context)
    except Exception as error:
        payload = {
            "errorType": type(error).__name__,
            "errorMessage": str(error),
            "stackTrace": traceback.format_exception(error),
        }
        return json.dumps(payload).encode(), True
    finally:
        # Powertools 3.37 keeps disabled metrics instead of dropping them at the end of the
        # invocation, then prints them as EMF JSON on stdout once 100 pile up (its auto-flush
        # ignores the switch): a long local sweep printed them on the user's terminal.
        metrics.clear_metrics()
    return json.dumps(result).encode(), False


def patched_invoke(
    self: LambdaFunction, body: str, request_headers: Any, response_headers: Any
) -> bytes:
    """Replacement for LambdaFunction.invoke (same signature as moto 5.2.5's)."""
    event = json.loads(body) if body else {}
    payload, errored = invoke_in_process(self, event)
    if errored:
        response_headers["x-amz-function-error"] = "Unhandled"
    return payload
