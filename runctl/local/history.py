"""Local mode's run history: the emulator lives only while `runctl local run` runs, so each run's
record and metrics are kept on disk, where `runctl local runs ...` reads them.

    <work dir>/history/<run_id>/record.json
    <work dir>/history/<run_id>/attempts/<n>/metrics.jsonl   (the same rows as in S3)
    <work dir>/history/.sweeps/<sweep_id>.json                (`runctl local sweep` summaries)
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lambdas.models.run_record import RunRecord, RunStatus
from lambdas.models.sweep_summary import SweepSummary
from runctl.client.metrics import parse_metric_lines
from runctl.client.store import METRICS_FILE
from runctl.errors import RunctlError

HISTORY_DIR = "history"
RECORD_FILE = "record.json"
# Cannot be a run id (those start with a letter or digit).
SWEEPS_DIR = ".sweeps"
# Run ids name folders here: nothing else may (no '..', no '/').
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")


class LocalHistory:
    """A RunStore over the history folder; `save` adds a finished local run."""

    def __init__(self, work_dir: Path) -> None:
        self.root = work_dir / HISTORY_DIR

    def save(self, record: RunRecord, metric_rows: list[list[dict[str, Any]]]) -> Path:
        folder = self._folder(record.run_id)
        if folder is None:
            raise ValueError(f"not a run id: {record.run_id!r}")
        for number, rows in enumerate(metric_rows, start=1):
            attempt_dir = folder / "attempts" / str(number)
            attempt_dir.mkdir(parents=True, exist_ok=True)
            lines = "".join(json.dumps(row) + "\n" for row in rows)
            (attempt_dir / METRICS_FILE).write_text(lines, encoding="utf-8")
        folder.mkdir(parents=True, exist_ok=True)
        # Written last: a run is in the history once its record is (metrics are then complete).
        _write_whole(folder / RECORD_FILE, record)
        return folder

    def save_sweep(self, summary: SweepSummary) -> Path:
        path = self._sweep_file(summary.sweep_id)
        if path is None:
            raise ValueError(f"not a sweep id: {summary.sweep_id!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_whole(path, summary)
        return path

    def sweep(self, sweep_id: str) -> SweepSummary | None:
        path = self._sweep_file(sweep_id)
        if path is None or not path.is_file():
            return None
        return _read_model(path, SweepSummary, "sweep summary", "delete it")

    def list_sweeps(self) -> list[SweepSummary]:
        """Newest first."""
        paths = (self.root / SWEEPS_DIR).glob("*.json")
        summaries = [
            _read_model(path, SweepSummary, "sweep summary", "delete it") for path in paths
        ]
        return sorted(summaries, key=lambda summary: summary.written_at, reverse=True)

    def get(self, run_id: str) -> RunRecord | None:
        folder = self._folder(run_id)
        if folder is None:
            return None
        return self._read(folder / RECORD_FILE)

    def list_runs(
        self, experiment: str | None = None, status: RunStatus | None = None
    ) -> list[RunRecord]:
        if not self.root.is_dir():
            return []
        records = [self._read(path) for path in self.root.glob(f"*/{RECORD_FILE}")]
        found = [
            record
            for record in records
            if record is not None
            and (experiment is None or record.experiment == experiment)
            and (status is None or record.status == status)
        ]
        return sorted(found, key=lambda record: record.created_at, reverse=True)

    def metric_rows(self, record: RunRecord) -> list[list[dict[str, Any]]]:
        folder = self._folder(record.run_id)
        rows = []
        for number in range(1, record.attempt + 1):
            path = None if folder is None else folder / "attempts" / str(number) / METRICS_FILE
            text = path.read_text(encoding="utf-8") if path and path.is_file() else ""
            rows.append(parse_metric_lines(text))
        return rows

    def _folder(self, run_id: str) -> Path | None:
        return self.root / run_id if _RUN_ID.match(run_id) else None

    def _sweep_file(self, sweep_id: str) -> Path | None:
        # Sweep ids follow run ids' rule (a sweep's runs are named after it).
        return self.root / SWEEPS_DIR / f"{sweep_id}.json" if _RUN_ID.match(sweep_id) else None

    @staticmethod
    def _read(path: Path) -> RunRecord | None:
        if not path.is_file():
            return None
        return _read_model(path, RunRecord, "run record", "delete its folder")


Model = TypeVar("Model", bound=BaseModel)


def _write_whole(path: Path, model: BaseModel) -> None:
    """Written under a temporary name and renamed: a reader sees the whole file or none."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(model.model_dump_json(indent=2), encoding="utf-8")
    temporary.replace(path)


def _read_model(path: Path, model: type[Model], what: str, fix: str) -> Model:
    """A history file as its model; one line naming the file when it is not one."""
    try:
        return model.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as error:
        raise RunctlError(
            f"{path} is not a {what} ({error.error_count()} problems): {fix}"
        ) from error
