"""runctl's helper for training scripts: the script contract's paths, metric lines and SIGTERM, and
callbacks for Hugging Face's Trainer and for Lightning.

The agent puts this file's folder on the script's PYTHONPATH, so `import runctl_helper` works on
the instance with nothing installed; `pip install` of runctl installs it too, so the same script
runs on a laptop, where the folders fall back to ./checkpoints, ./output and ./data. Standard
library only and Python 3.9 (the instance's python3): transformers and lightning are imported only
by the callback made for them.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from pathlib import Path
from typing import Any

METRIC_PREFIX = "RUNCTL_METRIC"  # instance_agent/metrics.py reads these lines

_stop = threading.Event()
_handler_before_ours: Any = None


def run_id() -> str | None:
    """The run's id; None when the script runs without runctl."""
    return os.environ.get("RUNCTL_RUN_ID") or None


def attempt() -> int:
    """The attempt number, from 1 (a resumed run's attempt is 2 or more)."""
    return int(os.environ.get("RUNCTL_ATTEMPT") or 1)


def hparams() -> dict[str, Any]:
    """The run's hyperparameters (numbers stay numbers); {} without runctl."""
    values: dict[str, Any] = json.loads(os.environ.get("RUNCTL_HPARAMS") or "{}")
    return values


def checkpoint_dir() -> Path:
    """Where checkpoints go: each complete file here is uploaded to S3 as it appears."""
    return _directory("RUNCTL_CHECKPOINT_DIR", "checkpoints")


def output_dir() -> Path:
    """Everything here is uploaded to S3 when the script exits."""
    return _directory("RUNCTL_OUTPUT_DIR", "output")


def data_dir() -> Path:
    """The staged input data: one sub-folder per `data` entry of the RunSpec."""
    return _directory("RUNCTL_DATA_DIR", "data")


def resume_from() -> Path | None:
    """The checkpoint a resumed attempt continues from, restored from S3; None on a first
    attempt. Pass it on as it is: Trainer(resume_from_checkpoint=...), fit(ckpt_path=...)."""
    value = os.environ.get("RUNCTL_RESUME_FROM")
    return Path(value) if value else None


def _directory(variable: str, default: str) -> Path:
    path = Path(os.environ.get(variable) or default)
    path.mkdir(parents=True, exist_ok=True)
    return path


def metric(step: Any = None, /, **values: Any) -> None:
    """Print one `RUNCTL_METRIC {json}` line, flushed at once so that a kill loses none.

    NaN and infinities are written as null, keeping the line strict JSON (runctl keeps only
    finite numbers as a metric's latest value anyway); tensors and numpy numbers are written as
    their Python number, anything else that is not a JSON scalar as its str(). A `step` among the
    values wins over the positional one.
    """
    fields = {"step": step, **values} if step is not None else values
    line = json.dumps({name: _json_scalar(value) for name, value in fields.items()})
    print(f"{METRIC_PREFIX} {line}", flush=True)


def _json_scalar(value: Any) -> Any:
    if getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None)):
        value = value.item()  # a 0-d tensor or a numpy number
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def watch_sigterm() -> None:
    """Record SIGTERM instead of dying of it, so that the training loop can checkpoint and stop:
    see stop_requested().

    On an interruption notice (or `runctl stop`) the agent sends SIGTERM to the script's whole
    process group (DataLoader workers too), waits the RunSpec's `interruptions.grace_seconds`
    (less when AWS takes the instance sooner), then SIGKILLs whatever still runs: save within that
    time. A handler installed before this one (Lightning's, say) is still called. Call it from the
    main thread; calling it again changes nothing.
    """
    global _handler_before_ours
    current = signal.getsignal(signal.SIGTERM)
    if current is _on_sigterm:
        return
    _handler_before_ours = current
    signal.signal(signal.SIGTERM, _on_sigterm)


def _on_sigterm(signum: int, frame: Any) -> None:
    _stop.set()
    if callable(_handler_before_ours):
        _handler_before_ours(signum, frame)


def stop_requested() -> bool:
    """True once SIGTERM arrived, after watch_sigterm(): save a checkpoint and exit (143, as a
    process killed by SIGTERM would)."""
    return _stop.is_set()


def hf_callback() -> Any:
    """A transformers TrainerCallback: Trainer's logs become metric lines (step = the global step),
    and after SIGTERM (it calls watch_sigterm()) the Trainer saves a checkpoint-N folder at the end
    of the step it is in, then stops. train() then returns as usual: check stop_requested().

    In distributed training every rank must see SIGTERM at the same step; this is for one process.
    """
    from transformers import TrainerCallback

    class RunctlCallback(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if state.is_world_process_zero and logs:
                metric(state.global_step, **logs)

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if stop_requested():
                control.should_save = True
                control.should_training_stop = True

    watch_sigterm()
    return RunctlCallback()


def lightning_callback() -> Any:
    """A Lightning Callback that prints `trainer.callback_metrics` as a metric line every
    `log_every_n_steps` optimizer steps (step = trainer.global_step).

    SIGTERM is Lightning's own business: its handler records it, the loop raises SIGTERMException
    at the end of the batch, and an OnExceptionCheckpoint callback saves the checkpoint (README,
    "The helper").
    """
    try:
        from lightning.pytorch import Callback
    except ImportError:
        from pytorch_lightning import Callback

    class RunctlCallback(Callback):
        def __init__(self) -> None:
            # With gradient accumulation several batches make one step; step 0 is before the first.
            self.printed_step = 0

        def on_train_batch_end(self, trainer: Any, *_: Any) -> None:
            step = trainer.global_step
            if (
                trainer.is_global_zero
                and trainer.callback_metrics
                and step != self.printed_step
                and step % trainer.log_every_n_steps == 0
            ):
                self.printed_step = step
                metric(step, **trainer.callback_metrics)

    return RunctlCallback()
