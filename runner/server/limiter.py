"""Failed attempts to prove who one is, limited per client address, in memory. ``/login`` counts
its failed sign-ins; ``Auth`` counts wrong bearer tokens sent to any route, apart, so that failed
sign-ins from an address never lock a script's token out. After ``FAILURES`` in ``WINDOW`` seconds
the address is answered 429 until its oldest failure leaves the window, so guessing costs hours
while a person who mistyped gets on at once.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

__all__ = ["LoginLimiter", "FAILURES", "WINDOW"]

FAILURES = 5
WINDOW = 300.0
_ADDRESSES = 10_000  # addresses remembered at most; the least recently failing are forgotten first


class LoginLimiter:
    def __init__(self, failures: int = FAILURES, window: float = WINDOW) -> None:
        self.failures, self.window = failures, window
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, address: str, now: float) -> deque[float]:
        times = self._seen.get(address, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def wait(self, address: str, now: float | None = None) -> float:
        """Seconds until ``address`` may try again; 0 when it may now."""
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        return times[0] + self.window - now if len(times) >= self.failures else 0.0

    def failed(self, address: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        times = self._recent(address, now)
        times.append(now)
        self._seen[address] = times
        self._seen.move_to_end(address)
        while len(self._seen) > _ADDRESSES:
            self._seen.popitem(last=False)
