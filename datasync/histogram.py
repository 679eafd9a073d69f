"""Latency histograms in fixed log-scale buckets, cheap to record and to summarise.

Example::

    h = LogHistogram()
    h.record(0.0042)                 # seconds
    h.summary()   # {"count": 1, "p50": 4.2.., "p95": 4.2.., "p99": 4.2.., "max": 4.2}  (ms)

The buckets are those of Prometheus native histograms (exponential buckets, "schema
3"): bucket ``i`` holds the values in ``(2**((i-1)/8), 2**(i/8)]`` seconds, eight per
power of two, each 9.05 % wider than the one below it
(https://prometheus.io/docs/specs/native_histograms/; the same idea as HdrHistogram's
log-linear buckets: a fixed relative error at any magnitude, no configuration).
Here the buckets are fixed from 2**-30 s (about 1 ns) to 2**10 s (about 17 min):
321 integers, and a value outside lands in the first or the last.

A percentile is estimated from the buckets: the bucket holding the value of that
rank (nearest-rank definition), reported as the bucket's geometric middle
``2**((i-0.5)/8)``, then clamped to the exact minimum and maximum. So a reported
percentile is within 2**(1/16) - 1 = 4.4 % of the true value of that rank (for
values inside the fixed range); ``max`` is exact.

Shared by the block store (flush latencies, :mod:`datasync.blockstore.flushing`)
and the app layer's metrics (:mod:`datasync.app.metrics`); it imports nothing of
datasync.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["LogHistogram", "BUCKETS_PER_DOUBLING", "RELATIVE_ERROR"]

#: Buckets per power of two (Prometheus native histograms' schema 3).
BUCKETS_PER_DOUBLING = 8
_LOWEST = -30 * BUCKETS_PER_DOUBLING   # bucket of 2**-30 s and below
_HIGHEST = 10 * BUCKETS_PER_DOUBLING   # bucket of 2**10 s and above
_SIZE = _HIGHEST - _LOWEST + 1
#: The largest relative error of a reported percentile (see the module docstring).
RELATIVE_ERROR = 2 ** (1 / (2 * BUCKETS_PER_DOUBLING)) - 1
_log2 = math.log2
_ceil = math.ceil


class LogHistogram:
    """Counts of latencies (seconds) in fixed log-scale buckets; see the module
    docstring. Not thread-safe: record from one thread (or under a lock).

    Example: ``h = LogHistogram(); h.record(0.002); p50, p99 = h.percentiles(0.5, 0.99)``"""

    __slots__ = ("counts", "count", "max", "min")

    def __init__(self) -> None:
        self.counts = [0] * _SIZE
        self.count = 0
        self.max = 0.0              # seconds, exact
        self.min = math.inf         # seconds, exact

    def record(self, seconds: float) -> None:
        """Count one latency of ``seconds`` (a negative or zero one lands in the
        lowest bucket)."""
        if seconds > 0.0:
            i = _ceil(_log2(seconds) * BUCKETS_PER_DOUBLING) - _LOWEST
            if i < 0:
                i = 0
            elif i >= _SIZE:
                i = _SIZE - 1
        else:
            i = 0
        self.counts[i] += 1
        self.count += 1
        if seconds > self.max:
            self.max = seconds
        if seconds < self.min:
            self.min = seconds

    def percentiles(self, *qs: float) -> list[float | None]:
        """The estimated values (seconds) of the quantiles ``qs`` (each in [0, 1],
        ascending), None each when nothing was recorded."""
        if not self.count:
            return [None] * len(qs)
        out: list[float | None] = []
        ranks = [max(1, _ceil(q * self.count)) for q in qs]
        seen, k = 0, 0
        for i, n in enumerate(self.counts):
            if not n:
                continue
            seen += n
            while k < len(ranks) and seen >= ranks[k]:
                middle = 2 ** ((i + _LOWEST - 0.5) / BUCKETS_PER_DOUBLING)
                out.append(min(max(middle, self.min), self.max))
                k += 1
            if k == len(ranks):
                break
        return out

    def summary(self) -> dict[str, Any]:
        """``{"count": int, "p50", "p95", "p99", "max": float ms | None}`` (None:
        nothing recorded)."""
        p50, p95, p99 = self.percentiles(0.5, 0.95, 0.99)
        return {"count": self.count, "p50": _ms(p50), "p95": _ms(p95), "p99": _ms(p99),
                "max": self.max * 1000.0 if self.count else None}


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0
