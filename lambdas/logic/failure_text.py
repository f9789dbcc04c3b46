"""A failed execution's (error, cause) as one readable line, and its stack trace apart.

Step Functions gives a Lambda step's failure a JSON cause: `{"errorMessage", "errorType",
"requestId", "stackTrace": [...]}` on AWS, `{"errorType", "errorMessage", "stackTrace"}` from
local mode's in-process Lambdas. A `.sync` child execution's failure nests the child's own
`Error`/`Cause` in it. Other causes (the Runctl.* Fail states', a stopped execution's) are plain
text. Shared by the CLI, which shows the line (and the trace only when asked), and the Sweep's
summary.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

# Wide enough for a RunSpecInvalid message naming a field, an S3 URI and why; a longer message
# (many problems at once) is cut there: the whole one is a `--verbose` away.
FAILURE_LINE_WIDTH = 200
ELLIPSIS = "…"
# How deep a cause may nest causes (a Sweep's Map item -> TrainRun -> Lambda is three).
_MAX_DEPTH = 5
# The field a RunSpecInvalid message starts with ('data.0.s3_uri: ...', after 'RunSpec is
# invalid: ' when pydantic found the problems): a cut line keeps it whole.
_LEADING_FIELD = re.compile(r"^(?:RunSpec is invalid: )?[A-Za-z_][\w.\[\]-]*: ")


@dataclass(frozen=True)
class ExecutionFailure:
    """What a failure says: its name (the Lambda's errorType, else the execution's error), its
    message on one line, and the stack trace when the cause carried one."""

    name: str
    message: str
    trace: str | None = None


def read_failure(error: str | None, cause: str | None) -> ExecutionFailure:
    """Unwrap a Lambda's JSON cause (nested ones too); anything else is the message as it is."""
    name, message, trace = error or "", cause or "", None
    for _ in range(_MAX_DEPTH):
        parsed = _json_object(message)
        if parsed is None:
            break
        if "errorMessage" in parsed or "errorType" in parsed:
            name = str(parsed.get("errorType") or name)
            message = _text(parsed.get("errorMessage"))
            trace = _trace_text(parsed.get("stackTrace", parsed.get("trace"))) or trace
        elif "Cause" in parsed or "cause" in parsed or "Error" in parsed or "error" in parsed:
            # A child execution's description (a .sync task): its own error and cause.
            name = str(parsed.get("Error") or parsed.get("error") or name)
            message = _text(parsed.get("Cause", parsed.get("cause")))
        else:
            break  # JSON, but nobody's error: shown as it is
    return ExecutionFailure(name=name, message=_one_line(message), trace=trace)


def failure_line(
    error: str | None, cause: str | None, width: int | None = FAILURE_LINE_WIDTH
) -> str:
    """'RunSpecInvalid: data.0.s3_uri: no objects under s3://b/x/' - `errorType: errorMessage`
    for a Lambda's failure, `error: cause` otherwise, never more than one line. Cut with an
    ellipsis after `width` characters (None: never), but never inside the leading field name."""
    failure = read_failure(error, cause)
    line = ": ".join(part for part in (failure.name, failure.message) if part)
    if width is None or len(line) <= width:
        return line
    head = len(failure.name) + 2 if failure.name and failure.message else 0
    field = _LEADING_FIELD.match(failure.message)
    keep = head + (field.end() if field else 0)
    return line[: max(width - len(ELLIPSIS), keep)].rstrip() + ELLIPSIS


def failure_trace(cause: str | None) -> str | None:
    """The stack trace a Lambda's cause carried, as printable lines; None when it had none."""
    return read_failure(None, cause).trace


def _json_object(text: str) -> dict[str, Any] | None:
    if not text.lstrip().startswith("{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _one_line(text: str) -> str:
    return " ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def _trace_text(value: Any) -> str | None:
    """A stackTrace is a list of frames ('  File ...\\n    code\\n'), or one string."""
    if isinstance(value, list):
        frames = [str(frame) for frame in value]
        text = "".join(frame if frame.endswith("\n") else f"{frame}\n" for frame in frames)
    elif isinstance(value, str):
        text = value
    else:
        return None
    return text.rstrip("\n") or None
