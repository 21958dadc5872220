"""Helpers shared by the nodes and tools: the QoS profile, camera_info subscriptions, counted
drops, node entry point, a node's lifetime in a tool."""
from __future__ import annotations

import sys
from collections import Counter
from contextlib import contextmanager
from typing import Callable, Iterator

import rclpy
from rclpy.node import Node
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy,
                       qos_profile_sensor_data)
from sensor_msgs.msg import CameraInfo

from hndesc_ros.errors import HndescError


def topic_qos(reliable: bool, depth: int = 10) -> QoSProfile:
    """The one QoS profile of every hndesc_ros publisher and subscription.

    Args:
        reliable: False: SensorDataQoS (best effort, volatile, depth 5), for live cameras where
            a late frame is worth less than the next one. True: reliable, volatile, keep last
            ``depth``, for bag replay, the node-to-node ``features/matches`` link, and the
            player and recorder tools (nothing may be lost).
        depth: history depth of the reliable profile (ignored when best effort).
    Returns:
        The profile. A reliable subscription does not match a best-effort publisher (a
        best-effort subscription matches both), so both ends of a link should agree.
    """
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.VOLATILE)


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

    def drop(self, reason: str, detail: str = '') -> None:
        self.counts[reason] += 1
        n = self.counts[reason]
        if n == 1 or n % 50 == 0:
            self.logger.warning(f'dropped input ({reason}, {n} so far): {detail}')


@contextmanager
def ros_node(name: str) -> Iterator[Node]:
    """rclpy initialised and one plain node (for tools such as the player and the recorder);
    both are shut down on leaving, however the block ends."""
    rclpy.init()
    node = Node(name)
    try:
        yield node
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


def spin_node(node_cls, args=None) -> int:
    """Create, spin and cleanly destroy a node; configuration errors exit 2 with one line."""
    rclpy.init(args=args)
    node = None
    try:
        node = node_cls()
        rclpy.spin(node)
    except HndescError as exc:
        print(f'{node_cls.__name__}: invalid configuration: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    except rclpy.executors.ExternalShutdownException:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
