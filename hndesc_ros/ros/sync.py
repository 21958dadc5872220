"""A small stereo synchroniser (message_filters is not on PyPI): pairs left/right by stamp;
and the latest-frame-wins worker of the front end.

Pure Python, message-agnostic: ``push('left'|'right', stamp_ns, item)`` returns the pairs that
became complete. Exact mode pairs equal stamps; approximate mode pairs the nearest stamps within
``tolerance_ns``. Unpaired items older than a completed pair, the oldest item beyond
``queue_size`` and an item replaced by a later one with the same stamp are dropped and counted.
Pairs come out in completion order, not necessarily in stamp order: the caller checks that
stamps increase.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple


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


class LatestWorker:
    """Runs ``fn(item)`` in one background thread on the newest submitted item: an item that
    is still waiting when a newer one comes is replaced (and counted in ``stale``), so the
    latency of a slow consumer stays bounded at any input rate (latest frame wins).

    Args:
        fn: the work.
        name: thread name.
        on_error: called with the exception when ``fn`` raises; the thread goes on with the
            next item (without it the exception is re-raised and would end the thread).
    """

    def __init__(self, fn: Callable[[Any], None], name: str = 'hndesc-latest',
                 on_error: Optional[Callable[[BaseException], None]] = None) -> None:
        self.fn, self.on_error = fn, on_error
        self.stale = 0
        self._item: Optional[Tuple[Any]] = None
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any) -> bool:
        """Hand over ``item``; True if it replaced one that had not started (a stale one)."""
        with self._cond:
            replaced = self._item is not None
            self.stale += replaced
            self._item = (item,)
            self._cond.notify()
        return replaced

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._item is None and not self._stopped:
                    self._cond.wait()
                if self._stopped:
                    return
                (item,), self._item = self._item, None
            try:
                self.fn(item)
            except Exception as exc:  # one bad frame must not end the node's processing
                if self.on_error is None:
                    raise
                self.on_error(exc)

    def stop(self, timeout: float = 5.0) -> None:
        """Let the running call finish, drop what waits, end the thread."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout)
