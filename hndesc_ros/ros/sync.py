"""A small stereo synchroniser (message_filters is not on PyPI): pairs left/right by stamp.

Pure Python, message-agnostic: ``push('left'|'right', stamp_ns, item)`` returns the pairs that
became complete. Exact mode pairs equal stamps; approximate mode pairs the nearest stamps within
``tolerance_ns``. Unpaired items older than a completed pair, the oldest item beyond
``queue_size`` and an item replaced by a later one with the same stamp are dropped and counted.
Pairs come out in completion order, not necessarily in stamp order: the caller checks that
stamps increase.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Dict, List, Tuple


class StereoSynchronizer:
    """Pair two streams by timestamp.

    Args:
        tolerance_ns: 0 for exact pairing, else the largest stamp difference accepted.
        queue_size: unpaired items kept per side (the oldest is dropped beyond it).
    """

    def __init__(self, tolerance_ns: int = 0, queue_size: int = 10) -> None:
        self.tolerance_ns, self.queue_size = int(tolerance_ns), int(queue_size)
        self.queues: Dict[str, OrderedDict] = {'left': OrderedDict(), 'right': OrderedDict()}
        self.dropped = {'left': 0, 'right': 0}

    def push(self, side: str, stamp_ns: int, item: Any) -> List[Tuple[int, Any, Any]]:
        """Add one item; returns the completed pairs as (left stamp, left item, right item)."""
        q = self.queues[side]
        if stamp_ns in q:  # the same stamp twice on one side: the newer item wins
            del q[stamp_ns]
            self.dropped[side] += 1
        q[stamp_ns] = item
        while len(q) > self.queue_size:
            q.popitem(last=False)
            self.dropped[side] += 1
        return self._match()

    def _match(self) -> List[Tuple[int, Any, Any]]:
        out = []
        left, right = self.queues['left'], self.queues['right']
        for ts in list(left):
            if not right:
                break
            best = min(right, key=lambda tr: abs(tr - ts))
            if abs(best - ts) <= self.tolerance_ns:
                out.append((ts, left.pop(ts), right.pop(best)))
                self._drop_older(ts)
        return out

    def _drop_older(self, stamp_ns: int) -> None:
        """Items older than a completed pair can never pair any more."""
        for side, q in self.queues.items():
            for ts in [t for t in q if t < stamp_ns - self.tolerance_ns]:
                del q[ts]
                self.dropped[side] += 1
