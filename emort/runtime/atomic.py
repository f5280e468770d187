"""The one atomic-write helper: every file emort writes goes through a temp file + rename.

An interrupted run never leaves a half-written output that a resumed run would
mistake for a finished one, and a failed write leaves no temp file behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path

_UMASK_LOCK = threading.Lock()


def _umask_from_proc() -> int | None:
    """The process umask as Linux (4.7+) reports it in /proc/self/status, or None elsewhere."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask() -> int:
    # os.umask can only be read by setting it, and while it is 0 any thread's new file is
    # world-writable; two threads doing it at once (the batch writer and the marker flush) could
    # even leave it at 0. So read it where the OS reports it, else set and reset it one at a time.
    m = _umask_from_proc()
    if m is not None:
        return m
    with _UMASK_LOCK:
        m = os.umask(0)
        os.umask(m)
    return m


@contextlib.contextmanager
def exclusive_lock(lock_path: str | os.PathLike):
    """An exclusive ``flock`` on ``lock_path`` (created, kept) for a read-modify-write of a file
    that several processes may update at once (an output folder's record, an augmentation
    manifest); other processes wait. Without ``fcntl`` (not POSIX), where the lock file cannot be
    opened (another user's, read-only) or where the file system has no ``flock``: no lock, as
    before locks existed, rather than no record."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    try:  # read-only, created readable and writable by all the umask allows: another user's run can lock it too
        fd = os.open(lock_path, os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:  # cannot be created or opened here: unlocked, as before locks existed (the write itself may still work)
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # a file system without flock (some NFS / FUSE mounts): unlocked
            yield
            return
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class Claims:
    """Claims on names that other processes test without waiting: "is another run making this
    output now?". Each name is one byte of ``lock_path``, at an offset hashed from the name,
    locked with an open file description lock (Linux ``F_OFD_SETLK``, kernel 3.15+). The kernel
    drops a process's claims when it ends, however it ends (a killed run leaves none behind);
    unlike POSIX record locks, closing another descriptor of the same file (the marker's
    :func:`exclusive_lock`) keeps them, and two ``Claims`` in one process exclude each other.

    Where such locks are missing (not Linux, a file system without them) or ``lock_path``
    cannot be opened for writing (another user's folder), every claim is granted: no exclusion,
    as before claims existed. The file is opened at the first :meth:`take` (its folder created).
    Thread-safe."""

    #: struct flock of 64-bit Linux: l_type, l_whence (short), l_start, l_len (off_t), l_pid (int), padding
    _FLOCK = "hhqqi4x"

    def __init__(self, lock_path: str | os.PathLike):
        self.lock_path = Path(lock_path)
        self._fd: int | None = None
        self._usable = sys.platform.startswith("linux") and struct.calcsize("P") == 8
        self._held: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def offset(name: str) -> int:
        """The byte of the lock file that stands for ``name`` (48 bits of its SHA-256)."""
        return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:6], "big")

    def _lock_byte(self, name: str, kind: int) -> None:
        import fcntl

        fcntl.fcntl(self._fd, fcntl.F_OFD_SETLK, struct.pack(self._FLOCK, kind, os.SEEK_SET, self.offset(name), 1, 0))

    def take(self, name: str, wait_s: float = 0.0) -> bool:
        """Claim ``name``: True when this object holds it now (or claims are unusable here),
        False when another holder still has it after ``wait_s`` seconds (0: never waits; the
        wait polls every 50 ms, and Ctrl-C ends it)."""
        deadline = time.monotonic() + wait_s
        while not self._take(name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _take(self, name: str) -> bool:
        with self._lock:
            if name in self._held or not self._usable:
                return True
            try:
                import fcntl

                if self._fd is None:
                    self.lock_path.parent.mkdir(parents=True, exist_ok=True)
                    self._fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
                self._lock_byte(name, fcntl.F_WRLCK)
            except (ImportError, AttributeError):  # a Python without F_OFD_SETLK
                self._usable = False
                return True
            except OSError as e:
                if e.errno in (errno.EAGAIN, errno.EACCES) and self._fd is not None:
                    return False  # held by another run
                self._usable = False  # cannot open the file, or no such locks on this file system
                return True
            self._held.add(name)
            return True

    def release(self, name: str) -> None:
        """Give up the claim on ``name`` (nothing when not held)."""
        with self._lock:
            if name not in self._held:
                return
            self._held.discard(name)
            try:
                import fcntl

                self._lock_byte(name, fcntl.F_UNLCK)
            except OSError:
                pass

    def close(self) -> None:
        """Give up every claim."""
        with self._lock:
            self._held.clear()
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def atomic_write(path: str | os.PathLike, write: Callable[[str], None], suffix: str = ".tmp") -> Path:
    """Call ``write(tmp_path)`` for a temp file beside ``path``, then rename it onto ``path``.

    The temp file lives in the destination folder (same file system, so the rename is
    atomic) and gets the permissions a plain ``open()`` would (umask), not mkstemp's 0600.
    Any exception removes the temp file and propagates. Returns ``Path(path)``.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=suffix, dir=str(p.parent))
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def write_bytes_atomic(path: str | os.PathLike, data) -> Path:
    """Bytes, or any buffer (e.g. TensorRT's ``IHostMemory``), written atomically."""

    def w(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(memoryview(data))

    return atomic_write(path, w)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    def w(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    return atomic_write(path, w)


def report_json(obj, rows: str = "results") -> str:
    """``obj`` as indented JSON, except the list ``obj[rows]`` (a batch report's per-file records),
    written last, one compact record per line: the same JSON value, easier to read and grep, and
    written by json's C encoder (an indent runs its Python one: 408 records took 26 ms of an
    `emort score` run's 1.3 s)."""
    items = obj.get(rows) if isinstance(obj, dict) else None
    if not isinstance(items, list) or not items:
        return json.dumps(obj, indent=2)
    rest = {k: v for k, v in obj.items() if k != rows}
    body = ",\n".join("    " + json.dumps(r) for r in items)
    tail = f"  {json.dumps(rows)}: [\n{body}\n  ]\n}}"
    return "{\n" + tail if not rest else json.dumps(rest, indent=2)[:-2] + ",\n" + tail


def write_json_atomic(path: str | os.PathLike, obj, rows: str | None = None) -> Path:
    """``obj`` as indented JSON (UTF-8), written atomically; with ``rows``, that list of ``obj``
    one compact item per line (:func:`report_json`)."""
    return write_text_atomic(path, (json.dumps(obj, indent=2) if rows is None else report_json(obj, rows)) + "\n")


def check_writable(path: str | os.PathLike, what: str = "output", replaces: tuple[str, ...] = (".json",),
                   never: Collection[str] = ()) -> None:
    """Raise ``EmortError`` (one line) unless a file can be created at ``path``.

    For destinations such as ``--json``: checked before a batch starts, so a bad path
    does not lose a whole run's report at the end. An existing file is replaced only when
    its name ends in one of ``replaces`` (a report never overwrites an audio input, an
    output or a README given by mistake); a name ending in one of ``never`` (audio extensions,
    for a report written beside audio outputs) is refused even when no such file exists yet,
    as a later output of the same run could take it. Creates missing parent folders.
    """
    from emort.runtime.errors import EmortError

    p = Path(path)
    if p.is_dir():
        raise EmortError(f"{p}: {what} path is a folder; give a file name")
    if p.name.startswith(".emort-output"):
        raise EmortError(f"{p}: {what} would replace emort's record of earlier outputs; give another name")
    if p.suffix.lower() in never:
        raise EmortError(f"{p}: {what} path has an audio extension ({p.suffix}); give the report a {replaces[0]} name "
                         "(it would replace an audio file of that name)")
    if p.exists() and p.suffix.lower() not in replaces:
        raise EmortError(f"{p}: {what} would replace an existing file that is not {' or '.join(replaces)}; give another name")
    for parent in p.parents:
        if parent.exists():
            if not parent.is_dir():
                raise EmortError(f"{p}: {what} path goes through {parent}, which is a file, not a folder")
            break
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".probe", dir=str(p.parent))
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise EmortError(f"{p}: cannot write the {what} here ({e.strerror or e})") from None
