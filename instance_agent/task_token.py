"""The Train state's task token: heartbeats while the attempt runs, then success or failure.

The token ends exactly once. The first succeed()/fail() decides how; a later call (the script
exiting after an interruption notice already failed the task, say) is logged and ignored, and no
heartbeat is sent once the end is decided.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

logger = logging.getLogger(__name__)

# SendTaskFailure allows a cause of up to 32,768 characters; leave room for the service.
MAX_CAUSE_CHARS = 32_000
# The task is over already (ended by someone else, or timed out): nothing left to deliver.
_TOKEN_GONE = frozenset({"TaskDoesNotExist", "TaskTimedOut", "InvalidToken"})


def heartbeat_interval(heartbeat_seconds: float) -> float:
    """Three heartbeats per timeout window, at most one a second."""
    return max(1.0, heartbeat_seconds / 3)


class TaskToken:
    def __init__(self, client: Any, token: str) -> None:
        self.client = client
        self.token = token
        self._lock = threading.Lock()
        self._ending: tuple[str, dict[str, str]] | None = None  # (client method, its arguments)
        self._delivered = False

    @property
    def ended(self) -> bool:
        """True once succeed() or fail() was called (even if the call did not get through)."""
        return self._ending is not None

    def heartbeat(self) -> None:
        if self._ending is not None:
            return  # the task is over: a heartbeat could only fail
        try:
            self.client.send_task_heartbeat(taskToken=self.token)
        except (ClientError, BotoCoreError) as error:
            # TaskTimedOut means the state machine moved on; the result still lands in S3.
            logger.warning("task heartbeat failed: %s", error)

    def succeed(self, output: str) -> bool:
        """End the task with success; False (and no call) when its end was decided before."""
        return self._end("send_task_success", {"output": output})

    def fail(self, error: str, cause: str) -> bool:
        """End the task with a failure; False (and no call) when its end was decided before."""
        return self._end("send_task_failure", {"error": error, "cause": cause[:MAX_CAUSE_CHARS]})

    def retry_undelivered(self) -> bool:
        """Send the decided end again if its first call raised; True when a call was made."""
        with self._lock:
            if self._ending is None or self._delivered:
                return False
            self._send()
            return True

    def _end(self, method: str, arguments: dict[str, str]) -> bool:
        with self._lock:
            if self._ending is not None:
                logger.info(
                    "the task was already ended (%s); not ending it again (%s)",
                    _describe(self._ending),
                    _describe((method, arguments)),
                )
                return False
            self._ending = (method, arguments)
            self._send()
            return True

    def _send(self) -> None:
        """Raises what the call raised, except for a task that is gone already."""
        assert self._ending is not None
        method, arguments = self._ending
        try:
            getattr(self.client, method)(taskToken=self.token, **arguments)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _TOKEN_GONE:
                raise
            logger.info("the task had ended already: %s", error)
        self._delivered = True


def _describe(ending: tuple[str, dict[str, str]]) -> str:
    method, arguments = ending
    return arguments["error"] if method == "send_task_failure" else "success"
