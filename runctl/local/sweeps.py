"""Sweeps in local mode: runctl/sweeps.py's start, wait and cancel, bound to a LocalSession.

with LocalSession(root) as session:
    sweeps = LocalSweeps(session)
    sweep_id = sweeps.start(spec)              # SweepSpec or its JSON; checked first
    outcome = sweeps.wait(sweep_id)            # SweepOutcome: status, error, summary
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from lambdas.functions import STOP_SWEEP
from lambdas.integrations.sweep_files import SweepFiles
from lambdas.models.sweep_spec import SweepSpec
from lambdas.models.sweep_summary import StopSweepOutput
from runctl.local.session import LocalSession
from runctl.sweeps import (
    SweepOutcome,
    SweepProgress,
    SweepWatcher,
    cancel_sweep,
    start_sweep,
    wait_for_sweep,
)


def local_parallel_limit(cpus: int | None = None) -> int:
    """How many runs of a local sweep may run at once: every local "instance" shares this
    machine's CPUs, and with more than two per CPU their agent installs and boots outlast the
    (real) timeouts and fail as bootstrap-failed. On AWS each run has an instance of its own."""
    return max(2, 2 * (cpus or os.cpu_count() or 1))


class LocalSweeps:
    def __init__(self, session: LocalSession) -> None:
        self.session = session
        self.files = SweepFiles(session.s3, session.stack.bucket)

    @property
    def state_machine_arn(self) -> str:
        return self.session.stack.sweep_state_machine_arn

    def start(self, spec: SweepSpec | dict[str, Any], sweep_id: str | None = None) -> str:
        """Check the sweep as ExpandSweep will (SpecError if wrong), then start it, with at
        most `local_parallel_limit()` runs at once."""
        limited = _at_most_parallel(spec, local_parallel_limit())
        return start_sweep(self.session.sfn, self.state_machine_arn, limited, sweep_id)

    def wait(
        self,
        sweep_id: str,
        timeout_seconds: float = 900,
        poll_seconds: float = 0.5,
        on_progress: Callable[[SweepProgress], None] | None = None,
    ) -> SweepOutcome:
        watcher = SweepWatcher(self.files, self.session.table, sweep_id)
        return wait_for_sweep(
            self.session.sfn,
            self.files,
            self.state_machine_arn,
            sweep_id,
            timeout_seconds,
            poll_seconds,
            on_poll=(lambda: on_progress(watcher.poll())) if on_progress else lambda: None,
        )

    def cancel(self, sweep_id: str) -> StopSweepOutput:
        function = self.session.stack.function_arns[STOP_SWEEP.name]
        return cancel_sweep(
            self.session.sfn,
            self.files,
            self.state_machine_arn,
            self.session.lambda_client,
            function,
            sweep_id,
        )


def _at_most_parallel(spec: SweepSpec | dict[str, Any], limit: int) -> SweepSpec | dict[str, Any]:
    if isinstance(spec, SweepSpec):
        too_many = spec.max_parallel > limit
        return spec.model_copy(update={"max_parallel": limit}) if too_many else spec
    asked = spec.get("max_parallel")
    return {**spec, "max_parallel": limit} if isinstance(asked, int) and asked > limit else spec


__all__ = ["LocalSweeps", "SweepOutcome"]
