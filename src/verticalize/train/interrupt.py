"""A graceful stop: SIGTERM (what the console's Stop sends, and what `kill` and Kubernetes
send) asks the training loop to stop after the step it is in, with a checkpoint at that step,
so a resumed run loses nothing. Outside the loop SIGTERM interrupts at once, as Ctrl+C does.
Either way the command exits 130 and `verticalize run` resumes from the last checkpoint."""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()
_in_loop = threading.Event()


def _on_sigterm(signum, frame) -> None:
    _requested.set()
    if not _in_loop.is_set():
        raise KeyboardInterrupt


def install() -> None:
    """Take SIGTERM (main thread only; a no-op elsewhere)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)


def requested() -> bool:
    return _requested.is_set()


class cooperative:
    """While the loop runs, SIGTERM only sets the flag the loop checks between steps."""

    def __enter__(self):
        _in_loop.set()
        return self

    def __exit__(self, *exc) -> None:
        _in_loop.clear()
