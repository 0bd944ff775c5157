"""Running one step per instance in threads, all-or-nothing (shared by the runtimes' start())."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

MAX_THREADS = 16


class Cancelled(Exception):
    """An instance stopped waiting because another instance of the same start() failed."""


def run_parallel(
    items: Sequence[T], step: Callable[[T], R], cancel: threading.Event, name: str
) -> list[BaseException]:
    """Run ``step`` on every item in threads; at the first failure set ``cancel`` (steps watch it) and
    let the others finish. Returns the failures in item order (empty: all succeeded).

    An interrupt in the calling thread (Ctrl-C, SIGTERM turned KeyboardInterrupt) sets ``cancel`` before
    the pool joins its threads, so nobody waits out a health timeout on the way down.
    """
    if not items:
        return []
    pool = ThreadPoolExecutor(min(MAX_THREADS, len(items)), name)
    try:
        try:
            futures = [pool.submit(step, item) for item in items]
        except RuntimeError:  # interpreter shutdown (atexit): no new threads; one after the other
            return _run_sequentially(items, step, cancel)
        _, pending = wait(futures, return_when=FIRST_EXCEPTION)
        if pending:
            cancel.set()
            wait(pending)
    except BaseException:
        cancel.set()
        raise
    finally:
        pool.shutdown(wait=True)
    errors = [e for f in futures if (e := f.exception()) is not None]
    if errors:
        cancel.set()
    return errors


def first_error(errors: Sequence[BaseException]) -> BaseException:
    """The failure to report: the first that is not a mere cancellation."""
    real = [e for e in errors if not isinstance(e, Cancelled)]
    return (real or list(errors))[0]


def _run_sequentially(
    items: Sequence[T], step: Callable[[T], R], cancel: threading.Event
) -> list[BaseException]:
    errors: list[BaseException] = []
    for item in items:
        try:
            step(item)
        except Exception as exc:
            cancel.set()
            errors.append(exc)
    return errors
