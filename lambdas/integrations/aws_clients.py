"""boto3 clients shared by a Lambda's invocations (made on first use, so tests mock first)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling and transient errors before a step fails.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@cache
def aws_client(service: str, total_attempts: int | None = None) -> Any:
    """The service's client; `total_attempts` (counting the first call) replaces the standard
    mode's five retries, for calls whose failures the caller handles itself (RunInstances)."""
    if total_attempts is None:
        return boto3.client(service, config=_CONFIG)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": total_attempts},
        # A call that hangs must not eat the launch's time budget (lambdas/logic/launching.py).
        connect_timeout=5,
        read_timeout=15,
    )
    return boto3.client(service, config=config)
