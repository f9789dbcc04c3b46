"""A Lightning run that honours the runctl script contract through runctl_helper.

A small MLP learns a noisy nonlinear function of synthetic inputs. Hyperparameters
(RUNCTL_HPARAMS): steps, lr, save_every, log_every, batch_size, hidden, seed, step_seconds (the
least each step takes, to watch interruptions locally). ModelCheckpoint
writes a checkpoint every save_every steps and last.ckpt; on SIGTERM Lightning stops at the end of
the batch by raising SIGTERMException, OnExceptionCheckpoint saves interrupted.ckpt, and the script
exits 143. A resumed attempt continues from the file in RUNCTL_RESUME_FROM.

Needs lightning (Python 3.10 or later): examples/libraries/requirements.txt names it, and runctl
installs it on the instance.
"""

from __future__ import annotations

import sys
import time

import lightning.pytorch as pl
import runctl_helper
import torch
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


class Regressor(pl.LightningModule):
    def __init__(self, hidden: int, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def training_step(self, batch: list[torch.Tensor], batch_index: int) -> torch.Tensor:
        inputs, targets = batch
        loss = nn.functional.mse_loss(self.net(inputs), targets)
        self.log("loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


class Pace(pl.Callback):
    """Each step lasts at least `seconds` (hyperparameter step_seconds): a tiny model trains in
    moments, too fast to try an interruption by hand, or for the agent to see its saves."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_train_batch_end(self, *_args: object) -> None:
        time.sleep(self.seconds)


hp = runctl_helper.hparams()
pl.seed_everything(int(hp.get("seed", 0)))
inputs = torch.rand(4096, 2) * 4 - 2
targets = torch.sin(inputs[:, :1]) * inputs[:, 1:] + 0.05 * torch.randn(4096, 1)
data = DataLoader(
    TensorDataset(inputs, targets), batch_size=int(hp.get("batch_size", 64)), shuffle=True
)
checkpoints = runctl_helper.checkpoint_dir()
trainer = pl.Trainer(
    max_steps=int(hp.get("steps", 300)),
    log_every_n_steps=int(hp.get("log_every", 10)),
    callbacks=[
        runctl_helper.lightning_callback(),
        Pace(float(hp.get("step_seconds", 0))),
        ModelCheckpoint(
            dirpath=checkpoints, every_n_train_steps=int(hp.get("save_every", 10)), save_last=True
        ),
        # Not "last": on a run that ends by itself it deletes its own file, which would be
        # ModelCheckpoint's last.ckpt.
        OnExceptionCheckpoint(dirpath=checkpoints, filename="interrupted"),
    ],
    accelerator="cpu",
    logger=False,
    enable_progress_bar=False,
    enable_model_summary=False,
)
model = Regressor(hidden=int(hp.get("hidden", 32)), lr=float(hp.get("lr", 0.01)))
try:
    trainer.fit(model, data, ckpt_path=runctl_helper.resume_from())
except SIGTERMException:
    sys.exit(143)  # SIGTERMException would exit 0; interrupted.ckpt holds the progress
trainer.save_checkpoint(runctl_helper.output_dir() / "model.ckpt")
