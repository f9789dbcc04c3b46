"""Which checkpoint files are complete, from Linux inotify events rather than mtimes.

The binding is a few lines of ctypes, not a vendored package such as inotify_simple: the agent
ships stdlib-only and must stay auditable, and the three libc calls plus the event format are small
enough to read in one sitting.

TreeWatch watches a directory tree (a directory that appears is watched, then listed, so nothing
written in it is missed) and reports per file: "written" (created or modified), "closed" (closed
after being opened for writing), "moved_in" (renamed into place, or inside a directory renamed
into place), "removed" (deleted or renamed away), "removed_tree" (a directory deleted or renamed
away: everything under it) and "overflow" (events were lost: the kernel's queue overflowed, a new
directory could not be watched, or the root itself was deleted or moved). Attribute changes
(IN_ATTRIB: chmod, utime) are not watched. Writes through mmap make no event (the close of the
descriptor still does), and a hard link made in the tree is "written" with no close to follow.

CompletionTracker turns those into the product's rules:
- a file is complete after "closed" or "moved_in" with no "written" since; "written" makes it
  incomplete; "removed" forgets it, "removed_tree" everything under it. Files already there when
  the watch started are unknown (not complete) unless the caller vouches for them with
  mark_complete().
- Files found when a new directory is listed ("listed") were written before its watch existed
  (it is added at the next read(), up to a poll interval later): a file closed in that window
  never gets its close event. They are not complete, but `is_unknown` says so until any event
  for them comes, and the caller judges them by its mtime-stability rule meanwhile (a library
  that makes a folder and saves small files into it at once, as Hugging Face's Trainer does).
- mark_before_kill(): the agent is about to SIGKILL the script, and the kernel then closes the
  script's files, a close (IN_CLOSE_WRITE) for a file cut short. Events queued so far are applied;
  after that "closed" is ignored and "moved_in" makes a file incomplete (the content at that name
  is no longer the one vouched for), while "written" and "removed" still apply.
- "overflow": the tracker can no longer vouch for anything. `overflowed` becomes True, no file is
  complete any more, and the caller falls back to its mtime-stability rule for the rest of the
  attempt.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, NamedTuple

logger = logging.getLogger(__name__)

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_CLOEXEC = 0o2000000
IN_NONBLOCK = 0o4000

_WATCH_MASK = (
    IN_MODIFY
    | IN_CLOSE_WRITE
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
_EVENT_HEADER = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then name
_READ_SIZE = 64 * 1024  # many events; one is at most 16 + NAME_MAX + 1 bytes

EventKind = Literal[
    "written", "listed", "closed", "moved_in", "removed", "removed_tree", "overflow"
]


class RawEvent(NamedTuple):
    wd: int
    mask: int
    cookie: int
    name: str


@dataclass(frozen=True)
class Event:
    relative: str  # POSIX path under the root; "" for "overflow"
    kind: EventKind


def parse_events(buffer: bytes) -> list[RawEvent]:
    """Split what one read() of an inotify fd returned into its records (names are NUL-padded)."""
    events = []
    offset = 0
    while offset < len(buffer):
        wd, mask, cookie, length = _EVENT_HEADER.unpack_from(buffer, offset)
        offset += _EVENT_HEADER.size
        name = buffer[offset : offset + length].split(b"\0", 1)[0]
        offset += length
        events.append(RawEvent(wd, mask, cookie, os.fsdecode(name)))
    return events


def _load_libc() -> ctypes.CDLL:
    """The process's libc with the inotify calls typed; AttributeError when it has none."""
    libc = ctypes.CDLL(None, use_errno=True)
    for name, argtypes in (
        ("inotify_init1", [ctypes.c_int]),
        ("inotify_add_watch", [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]),
        ("inotify_rm_watch", [ctypes.c_int, ctypes.c_int]),
    ):
        function = getattr(libc, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return libc


def _errno_error(path: object = None) -> OSError:
    code = ctypes.get_errno()
    return OSError(code, os.strerror(code), path)


def _join(directory: str, name: str) -> str:
    return f"{directory}/{name}" if directory else name


def _is_within(relative: str, directory: str) -> bool:
    return relative == directory or relative.startswith(directory + "/")


def open_watch(root: Path) -> TreeWatch | None:
    """A watch on root and everything under it, or None (with a warning) when inotify can't be
    had here; the caller then judges completeness by mtimes alone."""
    if not sys.platform.startswith("linux"):
        logger.warning("No inotify on %s; checkpoint completeness uses mtimes only", sys.platform)
        return None
    try:
        libc = _load_libc()
    except (OSError, AttributeError) as error:
        logger.warning("libc has no inotify (%s); checkpoint completeness uses mtimes only", error)
        return None
    fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
    if fd < 0:
        failure = _errno_error()
        hint = " (fs.inotify.max_user_instances?)" if failure.errno == errno.EMFILE else ""
        logger.warning(
            "inotify_init1 failed: %s%s; checkpoint completeness uses mtimes only", failure, hint
        )
        return None
    watch = TreeWatch(libc, fd, root)
    try:
        watch._watch_directories("")
    except OSError as error:
        watch.close()
        hint = " (fs.inotify.max_user_watches?)" if error.errno == errno.ENOSPC else ""
        logger.warning(
            "Could not watch %s: %s%s; checkpoint completeness uses mtimes only", root, error, hint
        )
        return None
    return watch


class TreeWatch:
    """An inotify instance watching every directory under root; read() reports per-file events."""

    def __init__(self, libc: ctypes.CDLL, fd: int, root: Path) -> None:
        self.root = root
        self._libc = libc
        self._fd = fd
        self._directories: dict[int, str] = {}  # watch descriptor -> relative path ("" = root)
        # Directories renamed away during this read(), by cookie: (old path, its watches). A
        # rename within the tree pairs with its IN_MOVED_TO; the others leave the tree.
        self._moved_out: dict[int, tuple[str, list[int]]] = {}

    def __enter__(self) -> TreeWatch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Closing the fd drops every watch."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def read(self) -> list[Event]:
        """The events queued now, without blocking. The whole queue is read before any new
        directory is watched, so that directory's own events come in a later read()."""
        raw: list[RawEvent] = []
        while self._fd >= 0:
            try:
                chunk = os.read(self._fd, _READ_SIZE)
            except BlockingIOError:
                break
            if not chunk:
                break
            raw.extend(parse_events(chunk))
        events = []
        for item in raw:
            events.extend(self._translate(item))
        for _old, wds in self._moved_out.values():
            for wd in wds:
                self._directories.pop(wd, None)
                self._libc.inotify_rm_watch(self._fd, wd)
        self._moved_out.clear()
        return events

    def _translate(self, raw: RawEvent) -> list[Event]:
        if raw.mask & IN_Q_OVERFLOW:
            return [Event("", "overflow")]
        directory = self._directories.get(raw.wd)
        if directory is None:  # a watch removed since this event was queued
            return []
        if raw.mask & IN_IGNORED:
            del self._directories[raw.wd]
            return []
        if raw.mask & (IN_DELETE_SELF | IN_MOVE_SELF):
            # A subdirectory's own deletion or move is reported through its parent's watch.
            return [Event("", "overflow")] if directory == "" else []
        relative = _join(directory, raw.name)
        if raw.mask & IN_ISDIR:
            return self._translate_directory(raw, relative)
        if raw.mask & (IN_CREATE | IN_MODIFY):
            return [Event(relative, "written")]
        if raw.mask & IN_CLOSE_WRITE:
            return [Event(relative, "closed")]
        if raw.mask & IN_MOVED_TO:
            return [Event(relative, "moved_in")]
        if raw.mask & (IN_DELETE | IN_MOVED_FROM):
            return [Event(relative, "removed")]
        return []

    def _translate_directory(self, raw: RawEvent, relative: str) -> list[Event]:
        if raw.mask & IN_MOVED_FROM:
            wds = [wd for wd, path in self._directories.items() if _is_within(path, relative)]
            self._moved_out[raw.cookie] = (relative, wds)
            return [Event(relative, "removed_tree")]
        if raw.mask & IN_DELETE:
            return [Event(relative, "removed_tree")]
        if raw.mask & IN_MOVED_TO:
            renamed = self._moved_out.pop(raw.cookie, None)
            if renamed is not None:  # renamed within the tree: its watches follow it
                old, wds = renamed
                for wd in wds:
                    path = self._directories.get(wd)
                    if path is not None:
                        self._directories[wd] = relative + path[len(old) :]
            return self._watch_new_directory(relative, "moved_in")
        if raw.mask & IN_CREATE:
            return self._watch_new_directory(relative, "listed")
        return []

    def _watch_new_directory(self, relative: str, kind: EventKind) -> list[Event]:
        """Files already in a directory that just appeared: `kind` each; "overflow" when it can't
        be watched (its events would be lost)."""
        try:
            files = self._watch_directories(relative)
        except (FileNotFoundError, NotADirectoryError):
            return []  # gone again; its removal is queued
        except OSError as error:
            logger.warning("Could not watch %s: %s", self.root / relative, error)
            return [Event("", "overflow")]
        return [Event(path, kind) for path in files]

    def _watch_directories(self, top: str) -> list[str]:
        """Watch top and every directory under it; return the files already there. Each directory
        is watched before it is listed, so a file created meanwhile is listed or reported."""
        files = []
        pending = [top]
        while pending:
            directory = pending.pop()
            try:
                self._add_watch(directory)
                with os.scandir(self.root / directory) as listing:
                    entries = list(listing)
            except (FileNotFoundError, NotADirectoryError):
                if directory == top:
                    raise
                continue  # gone since its parent was listed; its parent's watch reports that
            for entry in entries:
                child = _join(directory, entry.name)
                if entry.is_dir(follow_symlinks=False):
                    pending.append(child)
                elif entry.is_file(follow_symlinks=False):
                    files.append(child)
        return files

    def _add_watch(self, directory: str) -> None:
        # Only the root may be a symbolic link; a link inside the tree is not followed.
        flags = IN_ONLYDIR | (IN_DONT_FOLLOW if directory else 0)
        path = self.root / directory
        wd = self._libc.inotify_add_watch(self._fd, os.fsencode(path), _WATCH_MASK | flags)
        if wd < 0:
            raise _errno_error(str(path))
        self._directories[wd] = directory  # an already watched directory keeps its wd


class CompletionTracker:
    """Per file, whether it is complete now, by the rules in the module docstring."""

    def __init__(self, watch: TreeWatch, clock: Callable[[], int] = time.monotonic_ns) -> None:
        self.overflowed = False
        self._watch = watch
        self._clock = clock
        self._complete: dict[str, bool] = {}
        self._unknown: set[str] = set()  # listed in a new directory, no event for it since
        self._last_event_ns: dict[str, int] = {}  # by file and by top-level name
        self._killing = False
        self._lock = threading.Lock()

    def update(self) -> None:
        """Apply the events queued since the last call."""
        with self._lock:
            self._drain()

    def mark_before_kill(self) -> None:
        """Call just before SIGKILLing the script: what is queued now happened before the kill;
        a close or rename seen after this is not trusted."""
        with self._lock:
            self._drain()
            self._killing = True

    def mark_complete(self, relative: str) -> None:
        """Vouch for a file that was there before the watch started (e.g. restored from S3)."""
        with self._lock:
            self._complete[relative] = True

    def is_complete(self, relative: str) -> bool:
        with self._lock:
            return not self.overflowed and self._complete.get(relative, False)

    def is_unknown(self, relative: str) -> bool:
        """Listed in a directory that appeared before its watch, and silent since: whether it
        was closed is not known (the caller's mtime rule decides)."""
        with self._lock:
            return not self.overflowed and relative in self._unknown

    def last_event_ns(self, relative: str) -> int | None:
        """Clock time of the newest event (removals included) for a file, or for any file under a
        top-level folder name; None when none was seen."""
        with self._lock:
            return self._last_event_ns.get(relative)

    def close(self) -> None:
        with self._lock:
            self._watch.close()

    def _drain(self) -> None:
        if self.overflowed:
            return
        events = self._watch.read()
        if any(event.kind == "overflow" for event in events):
            logger.warning("inotify lost events; checkpoints are judged by mtimes from now on")
            self.overflowed = True
            self._complete.clear()
            self._watch.close()
            return
        now = self._clock()
        for event in events:
            self._apply(event, now)

    def _apply(self, event: Event, now: int) -> None:
        relative = event.relative
        self._last_event_ns[relative] = now
        self._last_event_ns[relative.split("/", 1)[0]] = now
        self._unknown.discard(relative)
        if event.kind == "listed":
            self._complete[relative] = False
            self._unknown.add(relative)
        elif event.kind == "written":
            self._complete[relative] = False
        elif event.kind == "closed":
            if not self._killing:
                self._complete[relative] = True
        elif event.kind == "moved_in":
            self._complete[relative] = not self._killing
        elif event.kind == "removed":
            self._complete.pop(relative, None)
        elif event.kind == "removed_tree":
            for path in [path for path in self._complete if _is_within(path, relative)]:
                del self._complete[path]
                self._unknown.discard(path)
