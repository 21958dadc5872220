"""Record nav_msgs/Odometry from a topic into a KITTI or TUM trajectory file."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import rclpy
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

from hndesc_ros.eval import trajectory as tj
from hndesc_ros.ros.conversions import stamp_to_ns, transform_from_xyzq


def record_odometry(topic: str, out: str | Path, fmt: str = 'tum', count: int = 0,
                    idle: float = 0.0, timeout: float = 0.0,
                    base_to_camera=None) -> int:
    """Collect odometry until ``count`` messages, ``idle`` s without one after the first, or
    ``timeout`` s in all (0 = unlimited; Ctrl-C also stops). Poses are written as received
    (odom -> base_link), or converted back to the camera frame when ``base_to_camera`` is given
    (x y z qx qy qz qw), which makes them comparable with KITTI ground truth. Returns the count.
    """
    rclpy.init()
    node = Node('hndesc_record_odom')
    stamps, poses = [], []
    last = [time.monotonic()]
    T_bc = transform_from_xyzq(base_to_camera) if base_to_camera is not None else None

    def on_odom(msg: Odometry):
        p = msg.pose.pose
        T = transform_from_xyzq([p.position.x, p.position.y, p.position.z, p.orientation.x,
                                 p.orientation.y, p.orientation.z, p.orientation.w])
        if T_bc is not None:
            T = np.linalg.inv(T_bc) @ T @ T_bc
        stamps.append(stamp_to_ns(msg.header.stamp) * 1e-9)
        poses.append(T)
        last[0] = time.monotonic()

    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000,
                     reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Odometry, topic, on_odom, qos)
    start = time.monotonic()
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.1)
            now = time.monotonic()
            if count and len(poses) >= count:
                break
            if idle and poses and now - last[0] > idle:
                break
            if timeout and now - start > timeout:
                break
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    P = np.array(poses).reshape(-1, 4, 4)
    if fmt == 'kitti':
        tj.write_kitti(out, P)
    else:
        tj.write_tum(out, np.array(stamps), P)
    return len(poses)
