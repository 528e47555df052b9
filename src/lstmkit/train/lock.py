"""One writer per run folder: the lock that ``lstmkit train`` (and --resume) holds while it runs.

    with RunLock("runs/x", "lstmkit train"):
        ...                                     # write the folder

The lock is ``<run_dir>/.lock``, held with an exclusive fcntl.flock and holding the owner's pid,
host, start time and command. The kernel drops a flock when its process dies however it dies
(kill -9 included), so a lock left behind by a killed process is free: the next writer takes it
over, notes whose it was, and rewrites it. A second writer while the first lives gets a
RunLockedError naming the holder. Where fcntl is missing (Windows) or the file system has no
flock (some network mounts) the lock is a file created with O_EXCL whose pid is checked for life
(on this host) before it is taken over.
"""
from __future__ import annotations

import errno
import json
import os
import re
import socket
import sys
import time
from typing import Any, Optional

from .checkpoint import CheckpointError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK = ".lock"


class RunLockedError(CheckpointError):
    """Another live process is writing the run folder."""


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return False
    return True


def _describe(owner: dict[str, Any]) -> str:
    when = owner.get("started")
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when)) if isinstance(when, (int, float)) else "?"
    return (f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {since}"
            + (f" ({owner['command']})" if owner.get("command") else ""))


def _read_owner(fd_or_path: Any) -> dict[str, Any]:
    try:
        if isinstance(fd_or_path, int):
            os.lseek(fd_or_path, 0, os.SEEK_SET)
            raw = os.read(fd_or_path, 4096)
        else:
            with open(fd_or_path, "rb") as f:
                raw = f.read(4096)
        owner = json.loads(raw.decode("utf-8"))
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError, UnicodeDecodeError):
        return {}


class RunLock:
    """The exclusive writer's lock of a run folder (a context manager; acquire/release also work).

    Attributes after acquire: ``taken_over`` — the owner record of a dead process whose lock this
    one replaced (None if the folder was free).
    """

    def __init__(self, run_dir: str, command: str = "") -> None:
        self.run_dir, self.path = run_dir, os.path.join(run_dir, LOCK)
        self.command = command or " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))[:200]
        self.fd: Optional[int] = None
        self.taken_over: Optional[dict[str, Any]] = None

    def _record(self) -> bytes:
        return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                           "command": self.command}).encode()

    def _refuse(self, owner: dict[str, Any]) -> RunLockedError:
        if not owner:
            return RunLockedError(f"{self.run_dir} is locked by an unknown process ({self.path} names none); if no "
                                  f"lstmkit process writes the folder, delete {self.path}")
        return RunLockedError(f"{self.run_dir} is being written by another process ({_describe(owner)}); "
                              "wait for it to finish or stop it, or choose another run folder")

    def acquire(self) -> "RunLock":
        os.makedirs(self.run_dir, exist_ok=True)
        if fcntl is None:  # pragma: no cover - Windows
            return self._acquire_exclusive_create()
        for _attempt in range(20):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                owner = _read_owner(fd)
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):  # no flock on this file system
                    if not owner and os.path.getsize(self.path) == 0:
                        os.remove(self.path)  # the empty file our open just made
                    return self._acquire_exclusive_create()
                raise self._refuse(owner) from None
            # The file may have been unlinked (by a releasing owner) between our open and flock;
            # then our lock is on an orphan inode: start again on the current file.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = _read_owner(fd)
            if previous.get("pid") is not None:
                self.taken_over = previous  # a flock is free only once its holder is gone
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, self._record())
            os.fsync(fd)
            self.fd = fd
            return self
        raise RunLockedError(f"{self.run_dir}: could not take its lock (it kept changing hands)")

    def _acquire_exclusive_create(self) -> "RunLock":  # Windows, and file systems without flock
        for _attempt in range(20):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = _read_owner(self.path)
                pid = owner.get("pid")
                if owner.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_alive(pid):
                    self.taken_over = owner
                    stale = f"{self.path}.{os.getpid()}.stale"
                    try:
                        os.replace(self.path, stale)  # only one taker wins this move
                        os.remove(stale)
                    except OSError:
                        pass
                    continue
                raise self._refuse(owner) from None
            os.write(fd, self._record())
            self.fd = fd
            return self
        raise RunLockedError(f"{self.run_dir}: could not take its lock (it kept changing hands)")

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            os.remove(self.path)  # while still holding it: a waiting opener re-checks the inode
        except OSError:
            pass
        os.close(self.fd)  # drops the flock
        self.fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def holder(run_dir: str) -> Optional[dict[str, Any]]:
    """The owner record of run_dir's lock if a live process holds it, else None (for readers' messages)."""
    path = os.path.join(run_dir, LOCK)
    if not os.path.exists(path):
        return None
    owner = _read_owner(path)
    pid = owner.get("pid")
    if isinstance(pid, int) and owner.get("host") == socket.gethostname() and pid_alive(pid):
        return owner
    return None


_TEMP = re.compile(r"^\..+\.(\d+)\.tmp(\..*)?$")  # lstmkit._io.temp_name: .<name>.<pid>.tmp[suffix]


def remove_dead_temps(run_dir: str) -> list[str]:
    """Delete the temporary files that writers killed mid-write left in run_dir; their names."""
    removed = []
    for name in sorted(os.listdir(run_dir)) if os.path.isdir(run_dir) else []:
        m = _TEMP.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            try:
                os.remove(os.path.join(run_dir, name))
                removed.append(name)
            except OSError:
                pass
    return removed
