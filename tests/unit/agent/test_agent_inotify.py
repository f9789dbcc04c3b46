"""inotify completeness: closes and renames make a checkpoint complete, writes undo it, and after
mark_before_kill a close (the kernel's, for a killed script) or a rename is not trusted."""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from instance_agent import inotify
from instance_agent.inotify import (
    IN_CLOSE_WRITE,
    IN_CREATE,
    IN_Q_OVERFLOW,
    CompletionTracker,
    Event,
    RawEvent,
    TreeWatch,
    open_watch,
    parse_events,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    return directory


@pytest.fixture
def watch(root: Path) -> Iterator[TreeWatch]:
    opened = open_watch(root)
    assert opened is not None
    with opened:
        yield opened


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def tracker(watch: TreeWatch, clock: FakeClock) -> CompletionTracker:
    return CompletionTracker(watch, clock=clock)


def test_a_written_and_closed_file_is_complete(root: Path, tracker: CompletionTracker) -> None:
    (root / "ckpt-1.pt").write_bytes(b"weights")
    tracker.update()
    assert tracker.is_complete("ckpt-1.pt")


def test_a_file_still_open_for_writing_is_incomplete(
    root: Path, tracker: CompletionTracker
) -> None:
    with open(root / "ckpt-1.pt", "wb") as handle:
        handle.write(b"half")
        handle.flush()
        tracker.update()
        assert not tracker.is_complete("ckpt-1.pt")


def test_writing_again_after_the_close_makes_it_incomplete(
    root: Path, tracker: CompletionTracker
) -> None:
    (root / "ckpt-1.pt").write_bytes(b"v1")
    tracker.update()
    with open(root / "ckpt-1.pt", "ab") as handle:
        handle.write(b"v2")
        handle.flush()
        tracker.update()
        assert not tracker.is_complete("ckpt-1.pt")


def test_an_atomic_save_is_complete_at_the_rename(root: Path, tracker: CompletionTracker) -> None:
    (root / "ckpt-1.pt.tmp").write_bytes(b"weights")
    tracker.update()
    assert not tracker.is_complete("ckpt-1.pt")
    os.replace(root / "ckpt-1.pt.tmp", root / "ckpt-1.pt")
    tracker.update()
    assert tracker.is_complete("ckpt-1.pt")
    assert not tracker.is_complete("ckpt-1.pt.tmp")


def test_a_file_there_before_the_watch_is_complete_only_when_vouched_for(
    tmp_path: Path, clock: FakeClock
) -> None:
    (tmp_path / "restored.pt").write_bytes(b"from s3")
    watch = open_watch(tmp_path)
    assert watch is not None
    tracker = CompletionTracker(watch, clock=clock)
    assert not tracker.is_complete("restored.pt")
    tracker.mark_complete("restored.pt")
    assert tracker.is_complete("restored.pt")
    with open(tmp_path / "restored.pt", "ab") as handle:
        handle.write(b"more")
        handle.flush()
        tracker.update()
        assert not tracker.is_complete("restored.pt")
    tracker.close()


def test_a_close_after_mark_before_kill_is_not_trusted(
    root: Path, tracker: CompletionTracker
) -> None:
    (root / "done.pt").write_bytes(b"whole")
    handle = open(root / "cut.pt", "wb")  # noqa: SIM115 - closed after the mark, as by the kernel
    handle.write(b"cut sh")
    handle.flush()
    tracker.mark_before_kill()
    handle.close()
    tracker.update()
    assert not tracker.is_complete("cut.pt")
    # Closed before the mark, and only read by update() inside it: still trusted.
    assert tracker.is_complete("done.pt")


def test_a_write_after_mark_before_kill_still_counts(
    root: Path, tracker: CompletionTracker
) -> None:
    (root / "done.pt").write_bytes(b"whole")
    tracker.mark_before_kill()
    with open(root / "done.pt", "ab") as handle:
        handle.write(b"more")
    tracker.update()
    assert not tracker.is_complete("done.pt")


def test_a_rename_after_mark_before_kill_is_not_trusted(
    root: Path, tracker: CompletionTracker
) -> None:
    (root / "old.pt").write_bytes(b"vouched for")
    (root / "old.pt.tmp").write_bytes(b"replacement")
    (root / "new.pt.tmp").write_bytes(b"new")
    tracker.update()
    assert tracker.is_complete("old.pt")
    tracker.mark_before_kill()
    os.replace(root / "new.pt.tmp", root / "new.pt")
    os.replace(root / "old.pt.tmp", root / "old.pt")
    tracker.update()
    assert not tracker.is_complete("new.pt")
    assert not tracker.is_complete("old.pt")  # its content is no longer the one vouched for


def start_writer(path: Path) -> subprocess.Popen[bytes]:
    """A script that has written to `path`, not closed it, and waits to be killed."""
    writer = (
        "import sys\n"
        f"handle = open({str(path)!r}, 'wb')\n"
        "handle.write(b'x' * 4096)\n"
        "handle.flush()\n"
        "print('written', flush=True)\n"
        "sys.stdin.read()\n"
    )
    script = subprocess.Popen(
        [sys.executable, "-c", writer], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert script.stdout is not None
    assert script.stdout.readline() == b"written\n"
    return script


def test_the_kernel_closes_a_sigkilled_writers_file(root: Path, watch: TreeWatch) -> None:
    script = start_writer(root / "ckpt.pt")
    assert set(watch.read()) == {Event("ckpt.pt", "written")}
    script.kill()
    script.communicate()
    # A close for a file that may have been cut short: why mark_before_kill exists.
    assert watch.read() == [Event("ckpt.pt", "closed")]


def test_a_sigkilled_writers_file_is_not_complete_after_the_mark(
    root: Path, tracker: CompletionTracker
) -> None:
    script = start_writer(root / "ckpt.pt")
    tracker.mark_before_kill()
    script.kill()
    script.communicate()
    tracker.update()
    assert not tracker.is_complete("ckpt.pt")


def test_files_written_in_a_new_directory_are_seen_closing(
    root: Path, tracker: CompletionTracker
) -> None:
    (root / "step-5" / "optimizer").mkdir(parents=True)
    tracker.update()  # watches step-5 and the directory already inside it
    (root / "step-5" / "model.pt").write_bytes(b"m")
    (root / "step-5" / "optimizer" / "state.pt").write_bytes(b"o")
    tracker.update()
    assert tracker.is_complete("step-5/model.pt")
    assert tracker.is_complete("step-5/optimizer/state.pt")


def test_files_written_before_their_new_directory_was_watched_count_as_written(
    root: Path, tracker: CompletionTracker, clock: FakeClock
) -> None:
    (root / "step-5").mkdir()
    (root / "step-5" / "model.pt").write_bytes(b"closed before the watch")
    clock.now = 2_000
    tracker.update()
    assert not tracker.is_complete("step-5/model.pt")
    assert tracker.is_unknown("step-5/model.pt")  # the caller's mtime rule decides
    assert tracker.last_event_ns("step-5") == 2_000
    with open(root / "step-5" / "model.pt", "ab") as handle:
        handle.write(b"!")
    tracker.update()
    assert tracker.is_complete("step-5/model.pt")  # the directory is watched now
    assert not tracker.is_unknown("step-5/model.pt")


def test_a_file_saved_while_a_new_directory_is_being_watched_is_not_missed(
    root: Path, tracker: CompletionTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    (root / "step-5").mkdir()
    list_directory = os.scandir

    def save_then_list(path: Path) -> Iterator[os.DirEntry[str]]:
        if Path(path) == root / "step-5":
            (root / "step-5" / "model.pt").write_bytes(b"saved between watch and listing")
        return list_directory(path)

    monkeypatch.setattr(inotify.os, "scandir", save_then_list)
    tracker.update()
    monkeypatch.undo()
    tracker.update()
    assert tracker.is_complete("step-5/model.pt")


def test_a_directory_renamed_into_the_root_is_complete_throughout(
    tmp_path: Path, root: Path, tracker: CompletionTracker
) -> None:
    built = tmp_path / "staging" / "step-5"
    (built / "optimizer").mkdir(parents=True)
    (built / "model.pt").write_bytes(b"m")
    (built / "optimizer" / "state.pt").write_bytes(b"o")
    os.rename(built, root / "step-5")
    tracker.update()
    assert tracker.is_complete("step-5/model.pt")
    assert tracker.is_complete("step-5/optimizer/state.pt")
    with open(root / "step-5" / "optimizer" / "state.pt", "ab") as handle:
        handle.write(b"more")
        handle.flush()
        tracker.update()
        assert not tracker.is_complete("step-5/optimizer/state.pt")  # watched once moved in


def test_a_directory_renamed_within_the_tree_keeps_being_watched(
    root: Path, tracker: CompletionTracker
) -> None:
    (root / "a" / "inner").mkdir(parents=True)
    tracker.update()
    (root / "a" / "inner" / "f.pt").write_bytes(b"f")
    tracker.update()
    os.rename(root / "a", root / "b")
    tracker.update()
    assert not tracker.is_complete("a/inner/f.pt")
    assert tracker.is_complete("b/inner/f.pt")
    with open(root / "b" / "inner" / "f.pt", "ab") as handle:
        handle.write(b"more")
        handle.flush()
        tracker.update()
        assert not tracker.is_complete("b/inner/f.pt")


def watched_directories(watch: TreeWatch) -> int:
    """How many directories this watch's inotify instance watches, as the kernel counts them
    (other tests' instances in this process are not counted)."""
    return Path(f"/proc/self/fdinfo/{watch._fd}").read_text().count("inotify wd:")


def test_a_directory_renamed_out_of_the_tree_is_no_longer_watched(
    tmp_path: Path, root: Path, watch: TreeWatch
) -> None:
    (root / "a").mkdir()
    watch.read()
    assert watched_directories(watch) == 2
    # Renamed within the tree and then out of it before the watch read either rename.
    os.rename(root / "a", root / "b")
    os.rename(root / "b", tmp_path / "elsewhere")
    assert watch.read() == [Event("a", "removed_tree"), Event("b", "removed_tree")]
    assert watched_directories(watch) == 1
    (tmp_path / "elsewhere" / "f.pt").write_bytes(b"outside")
    assert watch.read() == []


def test_a_deleted_file_is_forgotten(root: Path, tracker: CompletionTracker) -> None:
    (root / "ckpt-1.pt").write_bytes(b"weights")
    tracker.update()
    assert tracker.is_complete("ckpt-1.pt")
    (root / "ckpt-1.pt").unlink()
    tracker.update()
    assert not tracker.is_complete("ckpt-1.pt")


def test_a_deleted_tree_is_forgotten(root: Path, tracker: CompletionTracker) -> None:
    (root / "step-5" / "optimizer").mkdir(parents=True)
    tracker.update()
    (root / "step-5" / "model.pt").write_bytes(b"m")
    (root / "step-5" / "optimizer" / "state.pt").write_bytes(b"o")
    tracker.update()
    shutil.rmtree(root / "step-5")
    tracker.update()
    assert not tracker.is_complete("step-5/model.pt")
    assert not tracker.is_complete("step-5/optimizer/state.pt")


def test_a_tree_moved_away_is_forgotten(
    tmp_path: Path, root: Path, tracker: CompletionTracker
) -> None:
    (root / "step-5").mkdir()
    tracker.update()
    (root / "step-5" / "model.pt").write_bytes(b"m")
    tracker.update()
    assert tracker.is_complete("step-5/model.pt")
    os.rename(root / "step-5", tmp_path / "step-5")  # no event for model.pt itself
    tracker.update()
    assert not tracker.is_complete("step-5/model.pt")


def test_last_event_time_is_per_file_and_per_top_level_folder(
    root: Path, tracker: CompletionTracker, clock: FakeClock
) -> None:
    (root / "step-5").mkdir()
    (root / "step-6").mkdir()
    tracker.update()
    clock.now = 5_000
    (root / "step-5" / "model.pt").write_bytes(b"m")
    tracker.update()
    clock.now = 6_000
    (root / "step-6" / "model.pt").write_bytes(b"m")
    (root / "top.pt").write_bytes(b"t")
    tracker.update()
    assert tracker.last_event_ns("step-5") == 5_000
    assert tracker.last_event_ns("step-5/model.pt") == 5_000
    assert tracker.last_event_ns("step-6") == 6_000
    assert tracker.last_event_ns("top.pt") == 6_000
    assert tracker.last_event_ns("step-7") is None


def test_a_real_queue_overflow_stops_vouching(root: Path, tracker: CompletionTracker) -> None:
    (root / "ckpt-1.pt").write_bytes(b"weights")
    tracker.update()
    assert tracker.is_complete("ckpt-1.pt")
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 100_000:
        pytest.skip(f"max_queued_events is {limit}: too many writes to overflow it")
    # Alternating between two files, so that no event merges into the one queued before it.
    with open(root / "a.log", "wb", buffering=0) as a, open(root / "b.log", "wb", buffering=0) as b:
        for _ in range(limit // 2 + 1):
            a.write(b".")
            b.write(b".")
    tracker.update()
    assert tracker.overflowed
    assert not tracker.is_complete("ckpt-1.pt")


def test_the_parser_reads_an_overflow_record() -> None:
    buffer = struct.pack("iIII", -1, IN_Q_OVERFLOW, 0, 0)
    assert parse_events(buffer) == [RawEvent(-1, IN_Q_OVERFLOW, 0, "")]


def test_the_parser_reads_packed_records_with_nul_padded_names() -> None:
    buffer = (
        struct.pack("iIII", 1, IN_CREATE, 0, 16)
        + b"ckpt-1.pt".ljust(16, b"\0")
        + struct.pack("iIII", 2, IN_CLOSE_WRITE, 7, 32)
        + b"optimizer-state.pt".ljust(32, b"\0")
    )
    assert parse_events(buffer) == [
        RawEvent(1, IN_CREATE, 0, "ckpt-1.pt"),
        RawEvent(2, IN_CLOSE_WRITE, 7, "optimizer-state.pt"),
    ]


def test_no_watch_when_inotify_init1_fails(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    class NoInstancesLeft:
        def inotify_init1(self, flags: int) -> int:
            ctypes.set_errno(errno.EMFILE)
            return -1

    monkeypatch.setattr(inotify, "_load_libc", NoInstancesLeft)
    with caplog.at_level(logging.WARNING, logger="instance_agent.inotify"):
        assert open_watch(root) is None
    assert "max_user_instances" in caplog.text
    assert os.strerror(errno.EMFILE) in caplog.text


def test_no_watch_when_libc_has_no_inotify(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def libc_without_inotify() -> ctypes.CDLL:
        raise AttributeError("undefined symbol: inotify_init1")

    monkeypatch.setattr(inotify, "_load_libc", libc_without_inotify)
    with caplog.at_level(logging.WARNING, logger="instance_agent.inotify"):
        assert open_watch(root) is None
    assert "inotify_init1" in caplog.text


def test_no_watch_off_linux(
    root: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with caplog.at_level(logging.WARNING, logger="instance_agent.inotify"):
        assert open_watch(root) is None
    assert "darwin" in caplog.text


def test_no_watch_for_a_missing_root(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="instance_agent.inotify"):
        assert open_watch(tmp_path / "missing") is None
    assert "missing" in caplog.text


def test_leaving_the_context_closes_the_fd(root: Path) -> None:
    before = len(os.listdir("/proc/self/fd"))
    watch = open_watch(root)
    assert watch is not None
    with watch:
        assert len(os.listdir("/proc/self/fd")) == before + 1
    assert len(os.listdir("/proc/self/fd")) == before
