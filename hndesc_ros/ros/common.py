"""Helpers shared by the nodes: QoS from the config, counted drops, node entry point."""
from __future__ import annotations

import sys
from collections import Counter

import rclpy
from rclpy.qos import (HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data)

from hndesc_ros.errors import HndescError


def input_qos(reliable: bool, depth: int) -> QoSProfile:
    """SensorDataQoS (best effort) by default; reliable with ``depth`` for bag replay."""
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE)


class DropCounter:
    """Counts dropped inputs by reason and logs each reason once, then every 50th time."""

    def __init__(self, logger):
        self.logger = logger
        self.counts = Counter()

    def drop(self, reason: str, detail: str = '') -> None:
        self.counts[reason] += 1
        n = self.counts[reason]
        if n == 1 or n % 50 == 0:
            self.logger.warning(f'dropped input ({reason}, {n} so far): {detail}')


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
