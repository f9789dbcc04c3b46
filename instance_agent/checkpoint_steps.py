"""Which training step a checkpoint holds, read from the library's own state where it says so.

In order: a folder's `trainer_state.json` (Hugging Face Trainer: `global_step`); a file saved by
`torch.save` (a zip holding `<name>/data.pkl`) whose top-level dict has an int `global_step`
(Lightning) or `step`; a name that says it (`epoch=0-step=20.ckpt`, `step_120.pt`,
`checkpoint-50`, `ckpt-000120.npz`). Otherwise None: `last.ckpt` or `last-v1.ckpt` hold no step
in their name, and guessing one from a version suffix reported step 1 for step 140.

The pickle is read with an unpickler that resolves no global at all (every class or function a
pickle names becomes an inert stub), so reading a step runs none of the checkpoint's code.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

logger = logging.getLogger(__name__)

HF_TRAINER_STATE = "trainer_state.json"
# Only the top-level pickle is read (tensors live in other zip members): this bounds the work.
_MAX_PICKLE_BYTES = 64 * 1024 * 1024
_STEP_IN_NAME = re.compile(r"(?:^|[^a-z])(?:global_)?step[=_-]?(\d+)(?![0-9])")
_WORD_THEN_NUMBER = re.compile(r"^[a-z]+[-_](\d+)$")


def checkpoint_step(path: Path) -> int | None:
    """The step of the checkpoint at `path` (a file, or a folder), or None when nothing says."""
    try:
        if path.is_dir():
            step = _trainer_state_step(path / HF_TRAINER_STATE)
        else:
            step = _torch_save_step(path)
    except (OSError, ValueError, zipfile.BadZipFile) as error:
        logger.debug("cannot read the step of %s: %s", path, error)
        step = None
    return step if step is not None else step_from_name(path.name)


def step_from_name(name: str) -> int | None:
    """`epoch=0-step=20.ckpt` -> 20, `checkpoint-50` -> 50; `last-v1.ckpt` -> None."""
    stem = PurePosixPath(name).stem.lower() if "." in name else name.lower()
    found = _STEP_IN_NAME.findall(stem)
    if found:
        return int(found[-1])
    whole = _WORD_THEN_NUMBER.match(stem)
    return int(whole.group(1)) if whole else None


def _trainer_state_step(path: Path) -> int | None:
    if not path.is_file():
        return None
    state = json.loads(path.read_text())
    return _int_or_none(state.get("global_step")) if isinstance(state, dict) else None


def _torch_save_step(path: Path) -> int | None:
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as archive:
        members = [info for info in archive.infolist() if info.filename.endswith("/data.pkl")]
        if len(members) != 1 or members[0].file_size > _MAX_PICKLE_BYTES:
            return None
        with archive.open(members[0]) as handle:
            try:
                state = _InertUnpickler(handle).load()
            except (pickle.UnpicklingError, EOFError, AttributeError, TypeError, IndexError):
                return None
    if not isinstance(state, dict):
        return None
    for key in ("global_step", "step"):
        step = _int_or_none(state.get(key))
        if step is not None:
            return step
    return None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


class _Inert:
    """Whatever a pickle names (a tensor rebuild, a class): takes any arguments, does nothing."""

    def __new__(cls, *_args: Any, **_kwargs: Any) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def __call__(self, *_args: Any, **_kwargs: Any) -> _Inert:
        return _Inert()

    def __setstate__(self, _state: Any) -> None:
        pass


class _AttributeDict(dict):  # type: ignore[type-arg]
    """Stands in for OrderedDict: a state_dict pickles one with attributes (`_metadata`)."""


class _InertUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _AttributeDict  # top-level state is often one: keep it readable
        return _Inert

    def persistent_load(self, pid: Any) -> Any:
        return None  # a tensor's storage: not needed for the step
