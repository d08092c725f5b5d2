"""Files spoc writes into its data folder hold secrets (the master key, agency private keys, demo
passwords, the SQLite databases): the folder is 0700 and every such file 0600, whatever the umask.

``touch(mode=0o600)`` alone is not enough: it leaves an existing file's mode as it was, and the
databases are created by SQLite (and the beat schedule by Celery) with the process's umask. So files
are opened with an explicit mode and then ``fchmod``-ed, and ``secure_data_dir`` tightens what an
earlier version (or another umask) left behind.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "PRIVATE_UMASK",
    "private_dir",
    "private_file",
    "private_sqlite",
    "secure_data_dir",
    "write_private",
]

PRIVATE_UMASK = 0o077
"""The umask ``spoc run``/``seed``/``demo`` run under, inherited by the API and the worker they start."""


def private_dir(path: Path) -> Path:
    """``path`` (and missing parents) created; ``path`` itself owner-only (0700)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def private_file(path: Path) -> Path:
    """``path`` exists (created empty if missing) and is owner read/write only (0600)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path``, owner read/write only (0600) from the first byte."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


def sqlite_path(url: str) -> Path | None:
    """The file of a ``sqlite:///`` (or ``sqla+sqlite:///``) URL; None for any other database."""
    for prefix in ("sqlite:///", "sqla+sqlite:///"):
        if url.startswith(prefix) and url[len(prefix) :] not in ("", ":memory:"):
            return Path(url[len(prefix) :].split("?", 1)[0])
    return None


def private_sqlite(data_dir: Path, url: str) -> None:
    """The data folder 0700 and the SQLite file of ``url`` created 0600 before SQLite creates it with the
    umask (SQLite gives its journal and WAL files the database file's mode)."""
    private_dir(data_dir)
    path = sqlite_path(url)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        private_file(path)


def secure_data_dir(data_dir: Path, *urls: str) -> None:
    """``private_sqlite`` for each of ``urls``, and everything already in the data folder tightened:
    files to 0600, folders to 0700 (what an earlier version or a looser umask left)."""
    private_dir(data_dir)
    for url in urls:
        private_sqlite(data_dir, url)
    for path in data_dir.rglob("*"):
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)
