"""Record nav_msgs/Odometry from a topic into a KITTI or TUM trajectory file."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import rclpy
from nav_msgs.msg import Odometry

from hndesc_ros.datasets import poses as poses_io
from hndesc_ros.ros.common import ros_node, topic_qos
from hndesc_ros.ros.conversions import pose_to_matrix, stamp_to_ns
from hndesc_ros.se3 import base_to_camera as to_camera_frame, from_xyzq


def record_odometry(topic: str, out: str | Path, fmt: str = 'tum', count: int = 0,
                    idle: float = 0.0, timeout: float = 0.0,
                    base_to_camera=None) -> int:
    """Collect odometry until ``count`` messages, ``idle`` s without one after the first, or
    ``timeout`` s in all (0 = unlimited; Ctrl-C also stops). Poses are written as received
    (odom -> base_link), or converted back to the camera frame when ``base_to_camera`` is given
    (x y z qx qy qz qw), which makes them comparable with KITTI ground truth. Returns the count.
    """
    stamps, poses = [], []
    last = [time.monotonic()]
    T_bc = from_xyzq(base_to_camera) if base_to_camera is not None else None

    def on_odom(msg: Odometry) -> None:
        T = pose_to_matrix(msg.pose.pose)
        if T_bc is not None:
            T = to_camera_frame(T, T_bc)
        stamps.append(stamp_to_ns(msg.header.stamp) * 1e-9)
        poses.append(T)
        last[0] = time.monotonic()

    with ros_node('hndesc_record_odom') as node:
        node.create_subscription(Odometry, topic, on_odom, topic_qos(True, 1000))
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
    P = np.array(poses).reshape(-1, 4, 4)
    if fmt == 'kitti':
        poses_io.write_kitti(out, P)
    else:
        poses_io.write_tum(out, np.array(stamps), P)
    return len(poses)
