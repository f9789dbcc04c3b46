"""S3 keys the agent reads and writes (docs/architecture.md, "S3 layout").

The functions named as in lambdas/constants.py mirror it exactly: the agent ships alone and cannot
import it, and a test checks that the two agree.
"""

from __future__ import annotations

RUNS_PREFIX = "runs/"
ENVS_PREFIX = "envs/"


def run_prefix(run_id: str) -> str:
    return f"{RUNS_PREFIX}{run_id}/"


def attempt_prefix(run_id: str, attempt: int) -> str:
    return f"{run_prefix(run_id)}attempts/{attempt}/"


def agent_config_key(run_id: str, attempt: int) -> str:
    return f"{attempt_prefix(run_id, attempt)}agent-config.json"


def attempt_result_key(run_id: str, attempt: int) -> str:
    return f"{attempt_prefix(run_id, attempt)}result.json"


def handoff_key(run_id: str, attempt: int) -> str:
    """Written by an interrupted attempt's agent once its last checkpoint is durable in S3."""
    return f"{attempt_prefix(run_id, attempt)}handoff.json"


def checkpoint_manifest_key(run_id: str) -> str:
    return f"{checkpoints_prefix(run_id)}latest.json"


def checkpoints_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}checkpoints/"


def checkpoint_version_prefix(run_id: str, version: str) -> str:
    """One upload of one checkpoint: its objects are never overwritten (checkpoint_manifest.py)."""
    return f"{checkpoints_prefix(run_id)}v/{version}/"


def outputs_prefix(run_id: str) -> str:
    return f"{run_prefix(run_id)}outputs/"


def log_stream_name(run_id: str, attempt: int) -> str:
    return f"{run_id}/{attempt}"


# Keys only the agent writes (listed in the same docs table).


def logs_prefix(run_id: str, attempt: int) -> str:
    return f"{attempt_prefix(run_id, attempt)}logs/"


def log_key(run_id: str, attempt: int, stream: str) -> str:
    """`stream` is "stdout" or "stderr"."""
    return f"{logs_prefix(run_id, attempt)}{stream}.log"


def metrics_key(run_id: str, attempt: int) -> str:
    return f"{attempt_prefix(run_id, attempt)}metrics.jsonl"


def env_archive_key(cache_key: str) -> str:
    """A built script environment, named by its cache key (environment.py)."""
    return f"{ENVS_PREFIX}{cache_key}.tar.gz"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def split_s3_uri(uri: str) -> tuple[str, str]:
    """Return (bucket, key) of an s3:// URI; ValueError when it is not one."""
    if not uri.startswith("s3://") or "/" not in uri[len("s3://") :]:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    bucket, key = uri[len("s3://") :].split("/", 1)
    if not bucket:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return bucket, key
