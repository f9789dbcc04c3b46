"""A Hugging Face Trainer run that honours the runctl script contract through runctl_helper.

A two-layer GPT-2 built from a config (nothing is downloaded) learns synthetic token sequences,
each token the one before plus a stride. Hyperparameters (RUNCTL_HPARAMS): steps, lr, save_every,
log_every, batch_size, seed, step_seconds (the least each step takes, to watch interruptions
locally). Trainer writes checkpoint-N folders into the checkpoint directory
(the newest two are kept); after SIGTERM runctl_helper's callback makes it save one more at the
end of the step and stop, and the script exits 143. A resumed attempt continues from the folder
in RUNCTL_RESUME_FROM.

Needs transformers[torch] (Python 3.11 or later): examples/libraries/requirements.txt names it,
and runctl installs it on the instance.
"""

from __future__ import annotations

import sys
import time

import runctl_helper
import torch
from torch.utils.data import Dataset
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

VOCAB = 64
LENGTH = 16


class StrideSequences(Dataset):
    def __init__(self, count: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        starts = torch.randint(0, VOCAB, (count, 1), generator=generator)
        strides = torch.randint(1, 4, (count, 1), generator=generator)
        self.tokens = (starts + strides * torch.arange(LENGTH)) % VOCAB

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[index], "labels": self.tokens[index]}


class Pace(TrainerCallback):
    """Each step lasts at least `seconds` (hyperparameter step_seconds): a tiny model trains in
    moments, too fast to try an interruption by hand, or for the agent to see its saves."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        time.sleep(self.seconds)


hp = runctl_helper.hparams()
seed = int(hp.get("seed", 0))
config = GPT2Config(vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=2, n_head=2)
args = TrainingArguments(
    output_dir=str(runctl_helper.checkpoint_dir()),
    max_steps=int(hp.get("steps", 200)),
    learning_rate=float(hp.get("lr", 3e-3)),
    per_device_train_batch_size=int(hp.get("batch_size", 16)),
    save_strategy="steps",
    save_steps=int(hp.get("save_every", 10)),
    save_total_limit=2,
    logging_steps=int(hp.get("log_every", 10)),
    report_to="none",
    disable_tqdm=True,
    use_cpu=True,
    seed=seed,
)
torch.manual_seed(seed)
trainer = Trainer(
    model=GPT2LMHeadModel(config),
    args=args,
    train_dataset=StrideSequences(1024, seed),
    callbacks=[runctl_helper.hf_callback(), Pace(float(hp.get("step_seconds", 0)))],
)
trainer.train(resume_from_checkpoint=runctl_helper.resume_from())
if runctl_helper.stop_requested():
    sys.exit(143)  # the checkpoint it just saved holds the progress
trainer.save_model(str(runctl_helper.output_dir()))
