"""Fixtures every test gets: fake AWS credentials, one region, no cached clients or env."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from lambdas.env import lambda_env
from lambdas.integrations.aws_clients import aws_client

# Powertools reads these when lambdas.observability is imported, which can happen while pytest
# collects test modules, before any fixture runs.
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "1")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "runctl")

REGION = "us-east-1"


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials and a fixed region, so no test can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "runctl")
    _clear_lambda_caches()
    yield
    _clear_lambda_caches()


def _clear_lambda_caches() -> None:
    # Both are process-wide caches: a client made under one test's mock must not serve the next.
    lambda_env.cache_clear()
    aws_client.cache_clear()


@contextmanager
def wide_console(width: int = 200) -> Iterator[None]:
    """The CLI's rich console is made once per process and may have fixed its width then (from
    COLUMNS, or an earlier test): tests that read tables give it a wide one, and put it back."""
    from runctl import render  # the CLI's, only for the tests that use it

    saved = render.console._width
    render.console.width = width
    try:
        yield
    finally:
        render.console._width = saved
