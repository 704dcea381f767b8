"""One writer per output key: two processes computing the same feature set never publish it twice.

Why a lock and not only atomic files: every file of a feature set is written whole, but the set is
published by a sequence (verify the parts, merge the errors, write ``_SUCCESS`` last); two writers
interleaving that sequence, or one repairing parts the other is writing, could publish twice or
remove good work. With the lock, the second writer waits, then finds the set complete (a cache hit).

Local roots: ``flock`` on ``<folder>/.writer.lock``. The kernel drops it when its holder dies (``kill -9``
included), so a dead writer never blocks the next one, and the next one resumes its work. The lock
file is never removed: a writer that removed it could let two others lock two different files.
Object stores have no locks: there, writers may compute at once (each part is whole and the same), and
``_SUCCESS`` is created exclusively (``StorageRoot.write_bytes(exclusive=True)``), so it is written once.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from partaware.storage import StorageRoot

LOCK_FILE = ".writer.lock"


@contextmanager
def writer_lock(root: StorageRoot, *relparts: str) -> Iterator[float]:
    """Hold the writer lock of the folder ``relparts`` under ``root``; yields the seconds spent waiting
    (for as long as another holder lives). On object stores this holds nothing (see above)."""
    if not root.is_local:
        yield 0.0
        return
    folder = root.join(*relparts)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        start = time.monotonic()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fcntl.flock(fd, fcntl.LOCK_EX)
        waited = time.monotonic() - start
        me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)  # who holds it, for a person looking at a waiting writer
        os.pwrite(fd, me, 0)
        yield waited
    finally:
        os.close(fd)  # releases the lock
