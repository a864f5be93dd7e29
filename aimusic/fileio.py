"""Atomic writes and content hashes: an output is never half-written."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Make sure ``path`` (a file, or with ``folder`` a directory) can be written before any
    work starts: its folder is created and a probe file written and removed there. An
    ``AimusicError`` names the path and the reason otherwise."""
    from aimusic.errors import AimusicError

    p = Path(path)
    where = p if folder else p.parent
    if not folder and p.is_dir():
        raise AimusicError(f"{p}: is a folder; name a file to write")
    probe = where / f".write-probe-{os.getpid()}"
    try:
        where.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb"):
            pass
        probe.unlink()
    except OSError as e:
        blocker = next((a for a in (where, *where.parents) if a.exists() and not a.is_dir()), None)
        why = f"{blocker} is a file, not a folder" if blocker is not None else e.strerror or e
        raise AimusicError(f"{p}: cannot write {'in this folder' if folder else 'this file'} "
                           f"({why})") from None
    return p


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # someone else's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike, quiet_seconds: float = 60.0) -> list[Path]:
    """Remove the temporaries :func:`atomic_path` left beside ``path`` when its writer was
    killed: ``.STEM.tmpPID.SUFFIX`` whose process is gone and which nobody has touched for
    ``quiet_seconds`` (a writer on another machine sharing the folder keeps its file
    fresh). Returns what was removed."""
    p = Path(path)
    removed = []
    for tmp in p.parent.glob(f".{glob.escape(p.stem)}.tmp*{glob.escape(p.suffix)}"):
        pid = tmp.name[len(p.stem) + 5:len(tmp.name) - len(p.suffix)]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            if time.time() - tmp.stat().st_mtime >= quiet_seconds:
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def writer_lock(lock: str | os.PathLike, what: str) -> Iterator[Path]:
    """Hold ``lock`` (a file naming this process) while ``what`` writes its folder: a second
    writer is refused with a message naming the holder; a lock left by a process that is gone
    (on this machine) is taken over. The lock is removed on exit."""
    import socket
    from datetime import datetime, timezone

    from aimusic.errors import AimusicError

    p = Path(lock)
    p.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
          "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    body = json.dumps(me).encode()
    for _ in range(3):
        try:
            fd = os.open(p, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = json.loads(p.read_text())
            except (OSError, ValueError):
                holder = {}
            dead = holder.get("host") == me["host"] and not _alive(int(holder.get("pid", 0)))
            if holder and not dead:
                raise AimusicError(
                    f"{p.parent}: another {holder.get('what', 'run')} is writing here (pid "
                    f"{holder.get('pid')} on {holder.get('host')}, since {holder.get('since')}); "
                    f"wait for it, or remove {p} if that process is gone") from None
            with contextlib.suppress(FileNotFoundError):  # stale (or unreadable): take it over
                p.unlink()
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(body)
        break
    else:
        raise AimusicError(f"{p}: could not take the lock")
    try:
        yield p
    finally:
        with contextlib.suppress(OSError):
            if p.read_bytes() == body:
                p.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename over ``path``.

    The temporary keeps the suffix so writers that infer a format from it still work. On
    failure the temporary is removed and ``path`` is left as it was.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(p)
    tmp = p.with_name(f".{p.stem}.tmp{os.getpid()}{p.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # persist the rename itself
        fd = os.open(p.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    p = Path(path)
    with atomic_path(p) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
    return p


def file_hash(path: str | os.PathLike, length: int = 16) -> str:
    """First ``length`` hex digits of the file's SHA-256: the identity artifacts depend on."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:length]
