"""A tiny real training loop (linear regression with numpy) that honours the runctl contract.

- hyperparameters come from RUNCTL_HPARAMS (lr, steps, batch_size, seed, step_seconds);
- a checkpoint is written every `checkpoint_every` steps to RUNCTL_CHECKPOINT_DIR, under a
  temporary name and then renamed, so the agent never uploads half a file;
- RUNCTL_RESUME_FROM, when set, is the checkpoint to continue from;
- metrics are printed as `RUNCTL_METRIC {...}` lines; the model goes to RUNCTL_OUTPUT_DIR;
- on SIGTERM (an interruption notice) it checkpoints at once and exits;
- a loss that blows up (too large an lr) ends it with exit code 3, as a diverged run should.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

hp = json.loads(os.environ.get("RUNCTL_HPARAMS", "{}"))
lr = float(hp.get("lr", 0.05))
steps = int(hp.get("steps", 60))
batch_size = int(hp.get("batch_size", 32))
checkpoint_every = int(hp.get("checkpoint_every", 10))
step_seconds = float(hp.get("step_seconds", 0.05))  # makes the demo watchable
rng = np.random.default_rng(int(hp.get("seed", 0)))
DIVERGED_LOSS = 1e6
EXIT_DIVERGED = 3

checkpoint_dir = Path(os.environ.get("RUNCTL_CHECKPOINT_DIR", "checkpoints"))
output_dir = Path(os.environ.get("RUNCTL_OUTPUT_DIR", "output"))
checkpoint_dir.mkdir(parents=True, exist_ok=True)
output_dir.mkdir(parents=True, exist_ok=True)

# The data: y = X @ true_w + noise (generated, so the example needs no download).
true_w = np.array([2.0, -3.0, 0.5, 1.5])
X = rng.normal(size=(2048, true_w.size))
y = X @ true_w + rng.normal(scale=0.1, size=len(X))


def save_checkpoint(step: int, w: np.ndarray) -> Path:
    final = checkpoint_dir / f"ckpt-{step:06d}.npz"
    temporary = checkpoint_dir / f".ckpt-{step:06d}.npz.tmp"
    with open(temporary, "wb") as handle:
        np.savez(handle, w=w, step=step)
    os.replace(temporary, final)  # atomic: the agent sees the whole file or none
    return final


w = np.zeros_like(true_w)
start = 0
resume_from = os.environ.get("RUNCTL_RESUME_FROM")
if resume_from:
    state = np.load(resume_from)
    w, start = state["w"], int(state["step"])
    print(f"resumed from {resume_from} at step {start}", flush=True)

current = {"step": start, "w": w}


def on_sigterm(signum: int, frame: object) -> None:
    path = save_checkpoint(current["step"], current["w"])
    print(f"SIGTERM: checkpointed step {current['step']} to {path.name}", flush=True)
    sys.exit(143)


signal.signal(signal.SIGTERM, on_sigterm)

for step in range(start + 1, steps + 1):
    batch = rng.integers(0, len(X), size=batch_size)
    error = X[batch] @ w - y[batch]
    w = w - lr * (2 / batch_size) * X[batch].T @ error
    current.update(step=step, w=w)
    if step % 5 == 0 or step == steps:
        loss = float(np.mean((X @ w - y) ** 2))
        if not np.isfinite(loss) or loss > DIVERGED_LOSS:
            print(f"diverged at step {step}: loss {loss:.3g} (lr {lr} too large?)", file=sys.stderr)
            sys.exit(EXIT_DIVERGED)
        print("RUNCTL_METRIC " + json.dumps({"step": step, "loss": round(loss, 6)}), flush=True)
    if step % checkpoint_every == 0:
        save_checkpoint(step, w)
    time.sleep(step_seconds)

np.save(output_dir / "weights.npy", w)
(output_dir / "summary.json").write_text(
    json.dumps({"steps": steps, "final_loss": float(np.mean((X @ w - y) ** 2))})
)
print(f"done: w={np.round(w, 3).tolist()}", flush=True)
