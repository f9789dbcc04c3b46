"""Which step a checkpoint holds: the library's own state first (trainer_state.json, a torch.save
dict's global_step), then the name; the pickle is read without running any of its code."""

from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import pytest

from instance_agent.checkpoint_steps import checkpoint_step, step_from_name


@pytest.mark.parametrize(
    ("name", "step"),
    [
        ("epoch=0-step=20.ckpt", 20),  # Lightning's ModelCheckpoint default
        ("epoch=3-step=1200-val_loss=0.25.ckpt", 1200),
        ("checkpoint-50", 50),  # Hugging Face Trainer's folder
        ("ckpt-000120.npz", 120),
        ("step_120.pt", 120),
        ("global_step300", 300),  # DeepSpeed's folder
        ("last.ckpt", None),
        ("last-v1.ckpt", None),  # a version suffix is not a step
        ("checkpoint.pt", None),
        ("model_v2.pt", None),
    ],
)
def test_the_step_in_a_name(name, step):
    assert step_from_name(name) == step


def test_a_folders_trainer_state_json_gives_its_step_whatever_its_name(tmp_path: Path):
    folder = tmp_path / "best-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"m")
    (folder / "trainer_state.json").write_text(json.dumps({"global_step": 75, "epoch": 1.5}))

    assert checkpoint_step(folder) == 75


def test_a_folder_without_trainer_state_json_falls_back_to_its_name(tmp_path: Path):
    folder = tmp_path / "checkpoint-50"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"m")

    assert checkpoint_step(folder) == 50


def test_a_folder_with_a_torn_trainer_state_json_falls_back_to_its_name(tmp_path: Path):
    folder = tmp_path / "checkpoint-50"
    folder.mkdir()
    (folder / "trainer_state.json").write_text('{"global_st')

    assert checkpoint_step(folder) == 50


def test_a_lightning_checkpoint_saved_by_torch_gives_its_global_step(tmp_path: Path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "last-v1.ckpt"  # the name says nothing of the step
    model = torch.nn.Linear(3, 2)
    torch.save({"epoch": 4, "global_step": 140, "state_dict": model.state_dict()}, path)

    assert checkpoint_step(path) == 140


def test_a_torch_checkpoint_with_a_step_key_gives_it(tmp_path: Path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "model.pt"
    torch.save({"step": 9, "model": torch.nn.Linear(2, 2).state_dict()}, path)

    assert checkpoint_step(path) == 9


def test_a_bare_state_dict_saved_by_torch_gives_no_step(tmp_path: Path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "last.ckpt"
    torch.save(torch.nn.Linear(3, 2).state_dict(), path)

    assert checkpoint_step(path) is None


def test_a_torch_checkpoint_without_a_step_falls_back_to_its_name(tmp_path: Path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "epoch=0-step=20.ckpt"
    torch.save({"state_dict": torch.nn.Linear(3, 2).state_dict()}, path)

    assert checkpoint_step(path) == 20


def test_a_zip_that_is_not_a_torch_save_falls_back_to_its_name(tmp_path: Path):
    path = tmp_path / "ckpt-000120.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("weights.npy", b"\x93NUMPY")

    assert checkpoint_step(path) == 120


def test_a_file_that_is_not_a_zip_falls_back_to_its_name(tmp_path: Path):
    path = tmp_path / "step_120.pt"
    path.write_bytes(b"\x80\x02legacy torch format")

    assert checkpoint_step(path) == 120


class _Runs:
    """Pickles as a call of os.system: unpickling it with pickle.load runs the command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


def _torch_like_zip(path: Path, state: Any) -> None:
    """A zip shaped like torch.save's: <name>/data.pkl holds the pickled object."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{path.stem}/data.pkl", pickle.dumps(state, protocol=2))
        archive.writestr(f"{path.stem}/version", "3\n")


def test_reading_the_step_runs_none_of_the_pickles_code(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.ckpt"
    _torch_like_zip(path, _Runs(f"touch {marker}"))

    assert checkpoint_step(path) is None
    assert not marker.exists()


def test_a_step_beside_an_object_that_would_run_code_is_read_without_running_it(tmp_path: Path):
    marker = tmp_path / "pwned"
    path = tmp_path / "last.ckpt"
    _torch_like_zip(path, {"global_step": 7, "callbacks": _Runs(f"touch {marker}")})

    assert checkpoint_step(path) == 7
    assert not marker.exists()


@pytest.mark.parametrize("value", [True, -1, "140", 1.5, None])
def test_a_global_step_that_is_not_a_whole_number_is_not_a_step(tmp_path: Path, value):
    path = tmp_path / "last.ckpt"
    _torch_like_zip(path, {"global_step": value})

    assert checkpoint_step(path) is None
