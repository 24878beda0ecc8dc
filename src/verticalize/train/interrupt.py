"""A graceful stop: SIGTERM (what the console's Stop sends, and what `kill` and Kubernetes
send) during training asks the loop to stop after the step it is in, with a checkpoint at
that step, so a resumed run loses nothing; the command then exits 130 and `verticalize run`
resumes from that checkpoint. Outside the training loop SIGTERM keeps its usual meaning."""

from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def requested() -> bool:
    return _requested.is_set()


class cooperative:
    """While the loop runs (in the main thread), SIGTERM only sets the flag it checks."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, lambda *_: _requested.set())
        return self

    def __exit__(self, *exc) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
