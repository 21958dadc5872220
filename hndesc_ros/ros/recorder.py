"""Record nav_msgs/Odometry from a topic into a KITTI or TUM trajectory file."""
from __future__ import annotations

import time
from pathlib import Path

from nav_msgs.msg import Odometry

from hndesc_ros.datasets.poses import PoseFileWriter
from hndesc_ros.ros.common import offered_qos, ros_node, spin_until
from hndesc_ros.ros.conversions import pose_to_matrix, stamp_to_ns
from hndesc_ros.se3 import base_to_camera as to_camera_frame, from_xyzq


def record_odometry(topic: str, out: str | Path, fmt: str = 'tum', count: int = 0,
                    idle: float = 0.0, timeout: float = 0.0,
                    base_to_camera=None) -> int:
    """Collect odometry until ``count`` messages, ``idle`` s without one after the first,
    ``timeout`` s in all (0 = unlimited), SIGINT or SIGTERM. Every pose is appended to ``out``
    and flushed as it arrives, so the file holds all received poses however the recording ends
    (also ``kill -9``). Poses are written as received (odom -> base_link), or converted back to
    the camera frame when ``base_to_camera`` is given (x y z qx qy qz qw), which makes them
    comparable with KITTI ground truth. The subscription waits for a publisher and takes its
    QoS (:func:`~hndesc_ros.ros.common.offered_qos`): the back end keeps its last 100 poses
    for late subscribers, so a recorder started after the first poses still gets them.
    Returns the count.
    """
    T_bc = from_xyzq(base_to_camera) if base_to_camera is not None else None
    start = last = time.monotonic()

    with PoseFileWriter(out, fmt) as writer, ros_node('hndesc_record_odom') as (node, stop):
        def on_odom(msg: Odometry) -> None:
            nonlocal last
            T = pose_to_matrix(msg.pose.pose)
            if T_bc is not None:
                T = to_camera_frame(T, T_bc)
            writer.write(T, stamp_to_ns(msg.header.stamp) * 1e-9)
            last = time.monotonic()

        def done() -> bool:
            now = time.monotonic()
            return bool((count and writer.count >= count)
                        or (idle and writer.count and now - last > idle)
                        or (timeout and now - start > timeout))

        # the profile follows the publisher's, so wait for one: the back end's odometry is
        # transient-local, and the poses it published before this subscription still arrive
        qos = offered_qos(node, topic, 1000)
        while qos is None and not stop.wait(0.05) and not done():
            qos = offered_qos(node, topic, 1000)
        if qos is not None:
            node.create_subscription(Odometry, topic, on_odom, qos)
            spin_until(node, stop, done)
        return writer.count
