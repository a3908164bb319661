"""Whether this process is draining: told to stop, failing readiness, still serving.

A signal reaches a whole process, so the state is the process's: the server (serving.py)
begins the drain on SIGTERM, and readiness (on the API or a management port) answers 503
from then on, so a load balancer moves traffic away before the listener closes.
"""

from __future__ import annotations

import time

__all__ = ["PROCESS_DRAIN", "Drain"]


class Drain:
    """When this process began draining (monotonic seconds), or None while it is not."""

    def __init__(self) -> None:
        self.began_at: float | None = None

    @property
    def draining(self) -> bool:
        """True from the first SIGTERM until the process exits."""
        return self.began_at is not None

    def begin(self) -> None:
        """Fail readiness from now on (a second call keeps the first instant)."""
        if self.began_at is None:
            self.began_at = time.monotonic()


PROCESS_DRAIN = Drain()
