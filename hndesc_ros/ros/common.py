"""Helpers shared by the nodes and tools: the QoS profile, camera_info subscriptions, counted
drops, node entry point, a node's lifetime in a tool, and how they stop on a signal.

Stopping: SIGINT and SIGTERM set an event that the spin loops check every 0.1 s, so a node or
tool stops within one callback plus 0.1 s, however it was started. The handlers are installed
explicitly because a background job (``cmd &``) inherits SIGINT *ignored* and Python then
never installs its own; rclpy's handlers are turned off because they shut the context down
under a running callback (the traceback, and the lost poses, of ``record-odom`` on Ctrl-C).
"""
from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator, Optional, Tuple

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CameraInfo

from hndesc_ros.errors import HndescError


def topic_qos(reliable: bool, depth: int = 10, late_joiners: bool = False) -> QoSProfile:
    """The one QoS profile of every hndesc_ros publisher and subscription.

    Args:
        reliable: False: SensorDataQoS (best effort, volatile, depth 5), for live cameras where
            a late frame is worth less than the next one. True: reliable, keep last ``depth``
            (volatile unless ``late_joiners``), for bag replay, the node-to-node
            ``features/matches`` link, and the player and recorder tools (nothing may be lost).
        depth: history depth of the reliable profile (ignored when best effort).
        late_joiners: reliable only: transient-local durability, so that a subscription that
            asks for it and starts after the publisher still receives the last ``depth``
            messages (``odom`` for the recorder, ``features/matches`` for a back end in exact
            replay). Volatile subscriptions match such a publisher as usual; a transient-local
            subscription does not match a volatile publisher.
    Returns:
        The profile. A reliable subscription does not match a best-effort publisher (a
        best-effort subscription matches both), so both ends of a link should agree.
    """
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if late_joiners
                                  else DurabilityPolicy.VOLATILE))


def offered_qos(node: Node, topic: str, depth: int) -> Optional[QoSProfile]:
    """A subscription profile that matches every publisher of ``topic`` the graph knows of, as
    ``ros2 bag record`` adapts its own: reliable where all of them are reliable, and then
    transient-local where all of them are (so that the last messages published before the
    subscription still arrive). None while there is no publisher."""
    infos = node.get_publishers_info_by_topic(node.resolve_topic_name(topic))
    if not infos:
        return None
    reliable = all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)
    latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return topic_qos(reliable, depth, reliable and latched)


def subscribe_camera_info(node: Node, mono: bool, callback: Callable[[str, CameraInfo], None],
                          qos: QoSProfile) -> None:
    """Subscribe ``callback(side, msg)`` to ``camera_info`` (mono, side 'left') or to
    ``left/camera_info`` and ``right/camera_info`` (stereo)."""
    if mono:
        node.create_subscription(CameraInfo, 'camera_info', lambda m: callback('left', m), qos)
        return
    for side in ('left', 'right'):
        node.create_subscription(CameraInfo, f'{side}/camera_info',
                                 lambda m, s=side: callback(s, m), qos)


class DropCounter:
    """Counts dropped inputs by reason and logs each reason once, then every 50th time."""

    def __init__(self, logger) -> None:
        self.logger = logger
        self.counts = Counter()
        self._lock = threading.Lock()  # the front end drops from two threads

    def internal_error(self, exc: BaseException) -> None:
        """An unexpected exception while processing one input (a bug or a library failure):
        its traceback is logged, it is counted as ``internal_error``, the input is dropped."""
        import traceback
        self.logger.error(''.join(traceback.format_exception(exc)).rstrip())
        self.drop('internal_error', f'{type(exc).__name__}: {exc}')

    def drop(self, reason: str, detail: str = '') -> None:
        with self._lock:
            self.counts[reason] += 1
            n = self.counts[reason]
        if n == 1 or n % 50 == 0:
            self.logger.warning(f'dropped input ({reason}, {n} so far): {detail}')


def stop_on_signals() -> threading.Event:
    """An event that SIGINT and SIGTERM set (handlers installed now, in the main thread)."""
    stop = threading.Event()

    def handler(signum, _frame) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return stop


def use_large_data_profile() -> None:
    """Point Fast DDS at config/fastdds_large_data.xml (16 MB shared-memory segment: large
    best-effort images are not lost between processes) unless the user set a profile file."""
    if 'FASTDDS_DEFAULT_PROFILES_FILE' not in os.environ:
        from hndesc_ros.config import package_file
        os.environ['FASTDDS_DEFAULT_PROFILES_FILE'] = str(
            package_file('config', 'fastdds_large_data.xml'))


def init_ros(args=None) -> threading.Event:
    """rclpy.init (with the large-data transport profile, without rclpy's signal handlers,
    after removing the Fast DDS segments that dead processes left: :mod:`hndesc_ros.ros.shm`);
    returns the stop event of ours."""
    from rclpy.signals import SignalHandlerOptions
    from hndesc_ros.ros.shm import clean_before_start
    use_large_data_profile()
    clean_before_start()
    stop = stop_on_signals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    return stop


TEARDOWN_S = 1.5  # longest a node's teardown may take before the process exits anyway


@contextmanager
def teardown_deadline(seconds: float = TEARDOWN_S) -> Iterator[None]:
    """Bound the teardown of rclpy and DDS: once seen (1 in ~10 stops, Fast DDS with its default
    transports), destroying a node spun in native code holding the GIL, so no Python thread or
    signal handler could end it. faulthandler's watchdog is a C thread: past the deadline it
    prints where the process hung and exits (code 1); nothing is lost (the recorder flushes
    every pose, the nodes keep no files)."""
    import faulthandler
    try:
        faulthandler.dump_traceback_later(seconds, exit=True, file=sys.__stderr__)
    except (AttributeError, ValueError, OSError):  # no real stderr: teardown unguarded
        pass
    try:
        yield
    finally:
        faulthandler.cancel_dump_traceback_later()


@contextmanager
def ros_node(name: str) -> Iterator[Tuple[Node, threading.Event]]:
    """rclpy initialised, one plain node (for tools such as the player and the recorder) and
    the stop event that SIGINT / SIGTERM set; node and rclpy are shut down on leaving, however
    the block ends (within :data:`TEARDOWN_S`)."""
    stop = init_ros()
    node = Node(name)
    try:
        yield node, stop
    finally:
        with teardown_deadline():
            node.destroy_node()
            rclpy.try_shutdown()


def spin_until(node: Node, stop: threading.Event, done: Callable[[], bool] = lambda: False,
               period: float = 0.1) -> None:
    """Run the node's callbacks until ``stop`` is set, ``done()`` or rclpy shuts down; checks
    both at least every ``period`` s (and after each callback)."""
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not stop.is_set() and not done() and rclpy.ok():
            executor.spin_once(timeout_sec=period)
    finally:
        executor.remove_node(node)
        executor.shutdown()


def spin_node(node_cls, args=None) -> int:
    """Create, spin and cleanly destroy a node. SIGINT / SIGTERM stop it with exit code 0
    (within one callback plus 0.1 s); configuration errors exit 2 with one line."""
    stop = init_ros(args)
    node = None
    try:
        node = node_cls()
        spin_until(node, stop)
    except HndescError as exc:
        print(f'{node_cls.__name__}: invalid configuration: {exc}', file=sys.stderr)
        return 2
    finally:
        with teardown_deadline():
            if node is not None:
                node.destroy_node()  # the node's own threads first (a frame in progress ends)
            rclpy.try_shutdown()
    return 0
