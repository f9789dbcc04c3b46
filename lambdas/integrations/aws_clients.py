"""boto3 clients shared by a Lambda's invocations (made on first use, so tests mock first)."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling and transient errors before a step fails.
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5})


@cache
def aws_client(service: str) -> Any:
    return boto3.client(service, config=_CONFIG)
