"""`runctl local sweep`: Ctrl-C cancels the sweep (the emulator dies with the command, so the
sweep cannot go on without it) and still waits for its summary."""

from __future__ import annotations

from typing import Any

from runctl.local.commands import _wait_or_cancel
from runctl.sweeps import SweepOutcome

CANCELLED = SweepOutcome("sweep-a", "FAILED", "Runctl.SweepCancelled", "cancelled", None)


class FakeSweeps:
    """Stands in for LocalSweeps; `interrupts` waits are broken off by Ctrl-C."""

    def __init__(self, interrupts: int) -> None:
        self.interrupts = interrupts
        self.calls: list[str] = []

    def wait(self, sweep_id: str, timeout_seconds: float, **_: Any) -> SweepOutcome:
        self.calls.append(f"wait {sweep_id}")
        if self.interrupts:
            self.interrupts -= 1
            raise KeyboardInterrupt
        return CANCELLED

    def cancel(self, sweep_id: str) -> None:
        self.calls.append(f"cancel {sweep_id}")


def test_ctrl_c_cancels_the_sweep_then_waits_for_its_end():
    sweeps = FakeSweeps(interrupts=1)

    outcome, interrupted = _wait_or_cancel(sweeps, "sweep-a")  # type: ignore[arg-type]

    assert sweeps.calls == ["wait sweep-a", "cancel sweep-a", "wait sweep-a"]
    assert outcome is CANCELLED
    assert interrupted is True


def test_without_ctrl_c_nothing_is_cancelled():
    sweeps = FakeSweeps(interrupts=0)

    assert _wait_or_cancel(sweeps, "sweep-a") == (CANCELLED, False)  # type: ignore[arg-type]
    assert sweeps.calls == ["wait sweep-a"]
