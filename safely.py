"""Work that survives being stopped: files replaced whole, and Ctrl-C (SIGINT) or a polite kill
(SIGTERM) acted on only where stopping is safe. One mechanism for every command.

Every file islr writes goes through `replacing`: written under a temporary name beside the
target, renamed over it when complete, so a reader or a killed writer only ever leaves the old
file or the new one.

A signal handler only sets a flag; the work checks it where stopping is safe (between epochs'
batches, files, signers) and raises KeyboardInterrupt there. A KeyboardInterrupt raised by the
handler itself could land anywhere, for instance in h5py's object clean-up or in an at-fork
hook, where Python prints it and drops it and the work goes on. Worker processes ignore SIGINT:
the parent decides and removes what they left half-written.

    with safely.deferred() as stop:
        for item in work:
            safely.check(stop)              # KeyboardInterrupt here, between two items
            with safely.replacing(out) as temporary:
                temporary.write_text(...)

Plain Python (no torch), so the data tools use it too.
"""

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def deferred() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the returned flag for the length of the block; `check` reads it.

    Off the main thread (where Python allows no handlers) the flag is never set.
    """
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = {s: signal.signal(s, lambda signum, frame: stop.set()) for s in SIGNALS}
    try:
        yield stop
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def check(stop: threading.Event) -> None:
    """Raise KeyboardInterrupt if a stop was asked for."""
    if stop.is_set():
        raise KeyboardInterrupt


@contextmanager
def raised() -> Iterator[None]:
    """SIGINT and SIGTERM raise KeyboardInterrupt at once (code that holds no native resource
    mid-call: the training loop, whose files are written atomically)."""

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, stop) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def ignore_in_worker(*_: object) -> None:
    """A worker process's initializer: SIGINT is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextmanager
def ignored_while_starting_workers() -> Iterator[None]:
    """Workers start with SIGINT ignored (a setting that survives their exec), so a Ctrl-C while
    they start up (a second or more) prints no traceback in them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def temporary_name(path: Path | str) -> Path:
    """The name `replacing` writes `path` under: what a writer killed mid-write leaves."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp")


@contextmanager
def replacing(path: Path | str) -> Iterator[Path]:
    """A temporary name beside `path` to write to, renamed over `path` when the block ends
    without an error and removed when it does not."""
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: Path | str, text: str) -> None:
    """Replace a text file whole (`replacing`)."""
    with replacing(path) as temporary:
        temporary.write_text(text)
