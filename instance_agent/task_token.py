"""The Train state's task token: heartbeats while the attempt runs, then success or failure."""

from __future__ import annotations

import logging
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

# SendTaskFailure allows a cause of up to 32,768 characters; leave room for the service.
MAX_CAUSE_CHARS = 32_000


def heartbeat_interval(heartbeat_seconds: float) -> float:
    """Three heartbeats per timeout window, at most one a second."""
    return max(1.0, heartbeat_seconds / 3)


class TaskToken:
    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.token = token

    def heartbeat(self) -> None:
        try:
            self.client.send_task_heartbeat(taskToken=self.token)
        except (ClientError, BotoCoreError) as error:
            # TaskTimedOut means the state machine moved on; the result still lands in S3.
            logger.warning("task heartbeat failed: %s", error)

    def succeed(self, output: str) -> None:
        self.client.send_task_success(taskToken=self.token, output=output)

    def fail(self, error: str, cause: str) -> None:
        self.client.send_task_failure(
            taskToken=self.token, error=error, cause=cause[:MAX_CAUSE_CHARS]
        )
