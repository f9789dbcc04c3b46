"""A real PyTorch training loop (CPU is enough) that honours the runctl script contract.

A small MLP learns a noisy nonlinear function. Hyperparameters (RUNCTL_HPARAMS): lr, steps,
batch_size, hidden, seed, checkpoint_every, step_seconds. Checkpoints hold the model, the
optimizer and the step, written to a temporary name and renamed; RUNCTL_RESUME_FROM continues
from one; SIGTERM (interruption notice) checkpoints and exits 143; SIGUSR1 (when the RunSpec's
sets interruptions.signal_checkpoint; the agent then sets RUNCTL_SIGUSR1_CHECKPOINT=1)
checkpoints and carries on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

import torch
from torch import nn

hp = json.loads(os.environ.get("RUNCTL_HPARAMS", "{}"))
steps = int(hp.get("steps", 200))
batch_size = int(hp.get("batch_size", 64))
checkpoint_every = int(hp.get("checkpoint_every", 25))
step_seconds = float(hp.get("step_seconds", 0.0))
torch.manual_seed(int(hp.get("seed", 0)))

checkpoint_dir = Path(os.environ.get("RUNCTL_CHECKPOINT_DIR", "checkpoints"))
output_dir = Path(os.environ.get("RUNCTL_OUTPUT_DIR", "output"))
checkpoint_dir.mkdir(parents=True, exist_ok=True)
output_dir.mkdir(parents=True, exist_ok=True)

inputs = torch.rand(4096, 2) * 4 - 2
targets = torch.sin(inputs[:, :1]) * inputs[:, 1:] + 0.05 * torch.randn(4096, 1)
model = nn.Sequential(
    nn.Linear(2, int(hp.get("hidden", 32))),
    nn.Tanh(),
    nn.Linear(int(hp.get("hidden", 32)), 1),
)
optimizer = torch.optim.Adam(model.parameters(), lr=float(hp.get("lr", 0.01)))
state = {"step": 0}


def save_checkpoint() -> Path:
    final = checkpoint_dir / f"ckpt-{state['step']:06d}.pt"
    temporary = checkpoint_dir / f".{final.name}.tmp"
    torch.save(
        {"step": state["step"], "model": model.state_dict(), "optimizer": optimizer.state_dict()},
        temporary,
    )
    os.replace(temporary, final)  # the agent only ever sees whole checkpoints
    return final


resume_from = os.environ.get("RUNCTL_RESUME_FROM")
if resume_from:
    saved = torch.load(resume_from, weights_only=True)
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    state["step"] = int(saved["step"])
    print(f"resumed from {Path(resume_from).name} at step {state['step']}", flush=True)
else:
    print("no checkpoint: starting from scratch", flush=True)


def on_sigterm(signum: int, frame: object) -> None:
    print(f"SIGTERM: checkpointed step {state['step']} to {save_checkpoint().name}", flush=True)
    sys.exit(143)


signal.signal(signal.SIGTERM, on_sigterm)
if os.environ.get("RUNCTL_SIGUSR1_CHECKPOINT") == "1":
    signal.signal(signal.SIGUSR1, lambda signum, frame: save_checkpoint())

loss_fn = nn.MSELoss()
generator = torch.Generator().manual_seed(int(hp.get("seed", 0)) + state["step"])
while state["step"] < steps:
    batch = torch.randint(0, len(inputs), (batch_size,), generator=generator)
    loss = loss_fn(model(inputs[batch]), targets[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    state["step"] += 1
    if state["step"] % 10 == 0 or state["step"] == steps:
        with torch.no_grad():
            full = loss_fn(model(inputs), targets).item()
        print(
            "RUNCTL_METRIC " + json.dumps({"step": state["step"], "loss": round(full, 6)}),
            flush=True,
        )
    if state["step"] % checkpoint_every == 0:
        save_checkpoint()
    time.sleep(step_seconds)

torch.save(model.state_dict(), output_dir / "model.pt")
print(f"done after {state['step']} steps", flush=True)
