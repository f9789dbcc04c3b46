"""Tiny handlers the Lambda bridge tests import by name."""

from typing import Any

from lambdas.errors import RunSpecInvalid


def raises_runspec_invalid(event: Any, context: Any) -> Any:
    raise RunSpecInvalid("entry_point: bad")


def echo(event: Any, context: Any) -> Any:
    return {"echo": event}
