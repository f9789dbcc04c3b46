"""Checkpoint sync: complete checkpoints in $RUNCTL_CHECKPOINT_DIR go to S3 as versions of their
own, then latest.json moves to them (checkpoint_manifest.py).

A checkpoint is a top-level file or a top-level folder (Hugging Face's `checkpoint-50/`): a folder
goes up whole, as one version. When is one complete?
- With inotify (inotify.py): a file is complete once closed after its last write, or renamed in;
  after before_kill() the closes the kill itself causes are not believed. A file written into a
  new folder before the folder's watch existed is judged by the stability rule below. A folder
  is complete when each of its files is and nothing in it changed for FOLDER_QUIET_SECONDS (a
  library writes a folder file by file), and, for a Hugging Face folder (it has
  training_args.bin), when its trainer_state.json, written last, is there.
- Without inotify (not Linux, no watches left, events lost): a file is complete when its size and
  mtime held still between two scans; after a kill, only files that had settled before it.
- When the script exited by itself, whatever it left under a complete name is complete.

Never destroy a durable checkpoint: each version is uploaded from a snapshot copied while the
files held still (directly, re-checked afterwards, when too big to copy), to keys no other
version uses; the manifest moves only after every file is in S3; versions past the newest `keep`
are deleted only after that. A file that changed during its copy or upload is tried again on the
next pass; one that vanished (a library's own rotation) is skipped quietly.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any, Callable

from .bounds import fit_head
from .checkpoint_manifest import (
    FILE,
    FOLDER,
    CheckpointFile,
    CheckpointVersion,
    manifest_body,
    parse_manifest,
)
from .checkpoint_steps import HF_TRAINER_STATE, checkpoint_step
from .clock import utc_now_iso
from .files import sha256_of, walk_files
from .inotify import CompletionTracker, open_watch
from .layout import checkpoint_manifest_key, checkpoint_version_prefix
from .s3io import get_json, put_json, upload_file

logger = logging.getLogger(__name__)

TEMPORARY_SUFFIXES = (".tmp", ".partial", ".part")
MANIFEST_NAME = "latest.json"
DEFAULT_KEEP = 3
# Without inotify, before the agent kills the script: a file not written to for this long counts.
QUIET_SECONDS = 1.0
# A folder is written file by file: complete only once nothing in it changed for this long.
FOLDER_QUIET_SECONDS = 1.0
# Hugging Face Trainer writes training_args.bin with the model, trainer_state.json last.
HF_TRAINING_ARGS = "training_args.bin"
# Snapshots are copied to local disk first; past this size a version is uploaded in place.
SNAPSHOT_MAX_BYTES = 16 * 1024**3
SNAPSHOT_FREE_MARGIN_BYTES = 1024**3
# A checkpoint that changed but has not been durable for this long is warned about, once.
NOT_DURABLE_WARN_SECONDS = 120.0
_DELETE_BATCH = 1000
# The run item's checkpoint facts: at most this many lines of each kind, each this long.
FACT_LINES = 3
FACT_LINE_BYTES = 300

Signature = tuple[int, int]  # (size, mtime_ns)
FileSignatures = dict[str, Signature]  # relative path -> signature, for one checkpoint


def is_candidate(relative: str) -> bool:
    """False for the manifest's name, for a hidden top-level name (the agent's own partial
    downloads) and for temporary names anywhere; hidden names inside a folder are part of it
    (torch.distributed.checkpoint writes `.metadata`)."""
    parts = PurePosixPath(relative).parts
    if not parts or parts[0].startswith("."):
        return False
    if parts[-1].endswith(TEMPORARY_SUFFIXES):
        return False
    # runs/<id>/checkpoints/latest.json is the manifest's key: not a checkpoint name.
    return relative != MANIFEST_NAME


def iso_from_ns(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).isoformat()


@dataclass(frozen=True)
class NotDurable:
    """A checkpoint that kept changing and was never complete for `seconds`."""

    name: str
    seconds: float


class CheckpointChanged(Exception):
    """A file changed or vanished while its version was copied or uploaded."""


class CheckpointSync:
    """Call sync() every few seconds (with inotify, often: a pass with nothing new is a directory
    walk), and sync(final=True) once the script has exited."""

    def __init__(
        self,
        s3: Any,
        bucket: str,
        run_id: str,
        attempt: int,
        directory: Path,
        snapshot_dir: Path,
        keep: int = DEFAULT_KEEP,
        tracker: CompletionTracker | None = None,
        clock: Callable[[], str] = utc_now_iso,
        wall_clock_ns: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
        on_durable: Callable[[CheckpointVersion], None] | None = None,
        not_durable_warn_seconds: float = NOT_DURABLE_WARN_SECONDS,
    ) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.run_id = run_id
        self.attempt = attempt
        self.directory = directory
        self.snapshot_dir = snapshot_dir
        self.keep = keep
        self.tracker = tracker  # None: the stability rule
        self.clock = clock
        self.wall_clock_ns = wall_clock_ns  # the clock file mtimes are stamped with
        self.monotonic = monotonic
        self.on_durable = on_durable
        self.not_durable_warn_seconds = not_durable_warn_seconds
        self.versions: list[CheckpointVersion] = []  # what latest.json lists, newest first
        self.not_durable: dict[str, NotDurable] = {}
        self._durable: dict[str, tuple[FileSignatures, CheckpointVersion]] = {}
        self._sequence = 0
        self._pending_since: dict[str, float] = {}
        self._previous: FileSignatures = {}
        self._settled: FileSignatures = {}  # held still between the last two scans
        self._settled_at_kill: FileSignatures | None = None
        self._kill_ns: int | None = None
        self._lock = threading.Lock()  # one pass at a time
        self._state_lock = threading.Lock()  # what before_kill() sets, without waiting on uploads

    @property
    def newest(self) -> CheckpointVersion | None:
        return self.versions[0] if self.versions else None

    def adopt(self, versions: list[CheckpointVersion]) -> None:
        """The versions an earlier attempt's latest.json lists (usable ones): kept, and rotated
        out as this attempt's own come."""
        with self._lock:
            self.versions = list(versions)
            # A restarted agent of this attempt: its new versions must not reuse a listed id.
            for item in versions:
                attempt, _, sequence = item.version.partition("-")
                if attempt == str(self.attempt):
                    self._sequence = max(self._sequence, int(sequence))

    def mark_present(self, version: CheckpointVersion) -> None:
        """The checkpoint resumed from is on disk as S3 has it: not uploaded again unless the
        script changes it."""
        signatures = {}
        for item in version.files:
            info = os.stat(self.directory / item.path)
            signatures[item.path] = (info.st_size, info.st_mtime_ns)
            if self.tracker is not None:
                self.tracker.mark_complete(item.path)
        with self._lock:
            self._durable[version.name] = (signatures, version)

    def before_kill(self) -> None:
        """The script is about to get SIGKILL: a file it is writing then is cut short, and once
        it is dead such a file looks finished. From now on only what was complete by this
        moment counts. Does not wait for an upload in progress (the kill must not be late)."""
        if self.tracker is not None:
            self.tracker.mark_before_kill()
        now = self.wall_clock_ns()
        quiet_before = now - int(QUIET_SECONDS * 1e9)
        quiet = {
            relative: signature
            for relative, signature in self._scan().items()
            if signature[1] <= quiet_before
        }
        with self._state_lock:
            self._kill_ns = now
            self._settled_at_kill = {**self._settled, **quiet}

    def sync(self, final: bool = False, killed: bool = False) -> list[str]:
        """Upload the complete checkpoints that are new or changed, newest first (when time runs
        out, the one that matters is durable and named first); return their names.

        final: the script has exited; if by itself (killed=False), all it left is complete."""
        with self._lock:
            if self.tracker is not None:
                self.tracker.update()
            current = self._scan()
            ready = self._complete_files(current, final, killed)
            units = _group(current)
            changed = {
                name: files
                for name, files in units.items()
                if self._changed_since_durable(name, files)
            }
            complete = [
                name
                for name, files in changed.items()
                if all(relative in ready for relative in files)
                and self._folder_settled(name, files, final and not killed)
            ]
            done, superseded = [], []
            complete.sort(key=lambda unit: _newest_mtime(changed[unit]), reverse=True)
            for name in complete:
                if self._older_than_kept(changed[name]):
                    superseded.append(name)  # would be rotated out at once: not uploaded
                # Once the script has exited nothing rewrites a file: no snapshot to copy first
                # (at an interruption that copy would cost the two minutes' time).
                elif self._upload(name, changed[name], snapshot_first=not final):
                    done.append(name)
            self._note_not_durable(changed, done + superseded)
            return done

    # Completeness.

    def _complete_files(self, current: FileSignatures, final: bool, killed: bool) -> set[str]:
        with self._state_lock:
            settled_now = {
                relative: signature
                for relative, signature in current.items()
                if self._previous.get(relative) == signature
            }
            settled_before, at_kill = self._settled, self._settled_at_kill
            self._settled, self._previous = settled_now, current
        if final and not killed and at_kill is None:
            return set(current)
        tracker = self.tracker
        if tracker is not None and not tracker.overflowed:
            # A file inotify saw no close for, as it came before its folder's watch: held still.
            held_still = at_kill if at_kill is not None else settled_now
            return {
                relative
                for relative, signature in current.items()
                if tracker.is_complete(relative)
                or (tracker.is_unknown(relative) and held_still.get(relative) == signature)
            }
        if at_kill is not None:
            return {name for name, sig in current.items() if at_kill.get(name) == sig}
        if final:  # killed, and before_kill() was not called: what had settled before
            return {name for name, sig in current.items() if settled_before.get(name) == sig}
        return set(settled_now)

    def _folder_settled(self, name: str, files: FileSignatures, clean_exit: bool) -> bool:
        if _is_single_file(name, files) or clean_exit:
            return True
        names = {PurePosixPath(relative).name for relative in files}
        if HF_TRAINING_ARGS in names and HF_TRAINER_STATE not in names:
            return False  # Trainer is still writing this checkpoint-N folder
        with self._state_lock:
            kill_ns = self._kill_ns
        reference = kill_ns if kill_ns is not None else self.wall_clock_ns()
        return _newest_mtime(files) <= reference - int(FOLDER_QUIET_SECONDS * 1e9)

    def _changed_since_durable(self, name: str, files: FileSignatures) -> bool:
        durable = self._durable.get(name)
        return durable is None or durable[0] != files

    def _older_than_kept(self, files: FileSignatures) -> bool:
        if len(self.versions) < self.keep:
            return False
        oldest_kept = self.versions[self.keep - 1].saved_at
        return iso_from_ns(_newest_mtime(files)) <= oldest_kept

    # Upload.

    def _upload(self, name: str, files: FileSignatures, snapshot_first: bool = True) -> bool:
        self._sequence += 1
        version_id = f"{self.attempt}-{self._sequence:06d}"
        prefix = checkpoint_version_prefix(self.run_id, version_id)
        snapshot = self.snapshot_dir / version_id
        sent: list[str] = []
        try:
            copied = snapshot_first and self._snapshot(files, snapshot)
            source = snapshot if copied else self.directory
            entries = []
            for relative in sorted(files):
                digest = _sha256(source / relative)
                try:
                    upload_file(self.s3, source / relative, self.bucket, prefix + relative)
                except FileNotFoundError as error:  # s3transfer opens parts as it goes
                    raise CheckpointChanged(f"lost {relative} while uploading it") from error
                sent.append(prefix + relative)
                entries.append(CheckpointFile(relative, digest, files[relative][0]))
            if not copied:
                self._check_unchanged(files)
            step = self._step(name, source)  # before the snapshot goes
        except CheckpointChanged as changed:
            logger.info("checkpoint %s %s; it will be sent again", name, changed)
            self._delete(sent)
            return False
        finally:
            shutil.rmtree(snapshot, ignore_errors=True)
        newest_ns = _newest_mtime(files)
        version = CheckpointVersion(
            version=version_id,
            name=name,
            kind=FILE if _is_single_file(name, files) else FOLDER,
            files=tuple(entries),
            attempt=self.attempt,
            saved_at=iso_from_ns(newest_ns),
            uploaded_at=self.clock(),
            step=step,
        )
        self._durable[name] = (files, version)
        self._pending_since.pop(name, None)
        logger.info(
            "uploaded checkpoint %s (%d file(s), %d bytes, step %s) as version %s",
            name,
            len(entries),
            version.size(),
            version.step,
            version_id,
        )
        self._move_manifest(version)
        return True

    def _snapshot(self, files: FileSignatures, snapshot: Path) -> bool:
        """Copy the checkpoint aside while it holds still; False when it is too big to copy (it
        is then uploaded in place and checked afterwards). CheckpointChanged when it moved."""
        total = sum(size for size, _ in files.values())
        self.snapshot_dir.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(self.snapshot_dir).free
        if total > SNAPSHOT_MAX_BYTES or total + SNAPSHOT_FREE_MARGIN_BYTES > free:
            return False
        for relative in files:
            target = snapshot / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copyfile(self.directory / relative, target)
            except FileNotFoundError as error:
                raise CheckpointChanged(f"lost {relative} while copying it") from error
        self._check_unchanged(files)
        return True

    def _check_unchanged(self, files: FileSignatures) -> None:
        if self.tracker is not None:
            self.tracker.update()
        for relative, signature in files.items():
            try:
                info = os.stat(self.directory / relative)
            except FileNotFoundError as error:
                raise CheckpointChanged(f"lost {relative}") from error
            if (info.st_size, info.st_mtime_ns) != signature:
                raise CheckpointChanged(f"changed while it was copied or uploaded ({relative})")
            tracker = self.tracker
            vouched = tracker is None or tracker.overflowed or tracker.is_unknown(relative)
            if not vouched and not tracker.is_complete(relative):  # type: ignore[union-attr]
                raise CheckpointChanged(f"was written to again ({relative})")

    def _step(self, name: str, source: Path) -> int | None:
        return checkpoint_step(source / name)

    def _move_manifest(self, version: CheckpointVersion) -> None:
        """Only ever after every file of `version` is in S3; then retention."""
        listed = sorted(
            [version, *self.versions], key=lambda item: (item.saved_at, item.version), reverse=True
        )
        kept, dropped = listed[: self.keep], listed[self.keep :]
        put_json(self.s3, self.bucket, checkpoint_manifest_key(self.run_id), manifest_body(kept))
        self.versions = kept
        if self.on_durable is not None:
            try:
                self.on_durable(kept[0])
            except Exception:
                logger.exception("cannot record the newest checkpoint")
        dropped_keys = [
            item.key(self.run_id, entry.path)
            for item in dropped
            if item not in kept
            for entry in item.files
        ]
        if dropped_keys:
            logger.info(
                "deleting %d older checkpoint version(s) past the newest %d",
                len(dropped),
                self.keep,
            )
            self._delete(dropped_keys)

    def _delete(self, keys: list[str]) -> None:
        """Best effort: an object left behind costs storage, never a resume."""
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            try:
                self.s3.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            except Exception:
                logger.exception("cannot delete %d checkpoint object(s)", len(batch))

    def _note_not_durable(self, changed: dict[str, FileSignatures], done: list[str]) -> None:
        now = self.monotonic()
        for name in list(self._pending_since):
            if name not in changed:
                self._pending_since.pop(name)  # removed, or back to its durable state
        for name in changed:
            if name in done:
                continue
            since = self._pending_since.setdefault(name, now)
            waited = now - since
            if waited >= self.not_durable_warn_seconds and name not in self.not_durable:
                self.not_durable[name] = NotDurable(name, round(waited, 1))
                logger.warning(
                    "checkpoint %s has kept changing for %.0f s and was never complete in that "
                    "time, so none of it is in S3: if it is rewritten in place this often, save "
                    "to a new name (or a temporary name, then rename) instead",
                    name,
                    waited,
                )

    def _scan(self) -> FileSignatures:
        found = {}
        for relative in walk_files(self.directory):
            if not is_candidate(relative):
                continue
            try:
                info = os.stat(self.directory / relative)
            except FileNotFoundError:
                continue  # renamed or removed since the walk
            found[relative] = (info.st_size, info.st_mtime_ns)
        return found


def _group(current: FileSignatures) -> dict[str, FileSignatures]:
    units: dict[str, FileSignatures] = {}
    for relative, signature in current.items():
        units.setdefault(PurePosixPath(relative).parts[0], {})[relative] = signature
    return units


def _is_single_file(name: str, files: FileSignatures) -> bool:
    return list(files) == [name]


def _newest_mtime(files: FileSignatures) -> int:
    return max(mtime for _, mtime in files.values())


def _sha256(path: Path) -> str:
    try:
        return sha256_of(path)
    except FileNotFoundError as error:
        raise CheckpointChanged(f"lost {path.name}") from error


def read_manifest(s3: Any, bucket: str, run_id: str) -> list[CheckpointVersion]:
    """The versions the run's latest.json lists, newest first ([] when there is none);
    ManifestError when it is there but unusable."""
    raw = get_json(s3, bucket, checkpoint_manifest_key(run_id))
    if raw is None:
        return []
    return parse_manifest(raw, run_id)


def checkpoint_facts(
    restored: CheckpointVersion | None,
    newest: CheckpointVersion | None,
    skipped: list[str],
    not_durable: list[NotDurable],
) -> dict[str, Any]:
    """An attempt's checkpoints.<attempt> entry on the run item. Names and lines are the user's:
    each is bounded, and so is their number (the item holds the newest 10 attempts' entries
    within DynamoDB's 400 KB: tests/integration/lambdas/test_runs_table_item_size.py)."""
    facts: dict[str, Any] = {
        "resumed_from": restored.summary() if restored is not None else None,
        "newest": newest.summary() if newest is not None else None,
    }
    if skipped:
        facts["skipped"] = [fit_head(line, FACT_LINE_BYTES) for line in skipped[:FACT_LINES]]
    if not_durable:
        facts["not_durable"] = [
            {"name": fit_head(item.name, FACT_LINE_BYTES), "seconds": item.seconds}
            for item in not_durable[:FACT_LINES]
        ]
    return facts


def open_tracker(directory: Path) -> CompletionTracker | None:
    """inotify's word on which files are complete, or None (the stability rule) without it."""
    watch = open_watch(directory)
    return CompletionTracker(watch) if watch is not None else None
