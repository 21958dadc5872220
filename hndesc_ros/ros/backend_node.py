"""Back-end node: tracked features -> GTSAM VO -> odometry, path and TF (REP-105).

Subscribes: ``features/matches`` (PointCloud2 from the front end), ``left/camera_info`` and
``right/camera_info`` (the baseline comes from the right P[0, 3]; ``camera_info`` in mono).
Publishes: ``odom`` (nav_msgs/Odometry, ``odom`` -> ``base_link``), ``path`` (nav_msgs/Path),
TF ``odom`` -> ``base_link`` through tf2_ros where it is installed, ``backend/status``.
Stamps are the image stamps carried by the matches' header.
"""
from __future__ import annotations

import json

import numpy as np
from geometry_msgs.msg import PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import String

from hndesc_ros.errors import HndescError
from hndesc_ros.ros.common import DropCounter, input_qos, spin_node
from hndesc_ros.ros.conversions import (MATCH_DTYPE, array_to_observations,
                                        calib_from_camera_info, camera_info_projection,
                                        check_match_layout,
                                        stamp_to_ns, transform_from_xyzq)
from hndesc_ros.ros.params import declare_config
from hndesc_ros.types import to_quat
from hndesc_ros.vo.geometry import inv


class BackendNode(Node):
    """Thin wrapper over :class:`hndesc_ros.vo.odometry.StereoOdometry` (or MonoOdometry)."""

    def __init__(self, **kwargs):
        super().__init__('backend_node', **kwargs)
        self.cfg = declare_config(self, ('vo', 'ros'))
        r = self.cfg.ros
        self.mono = self.cfg.vo.mono
        self.T_base_cam = transform_from_xyzq(r.base_to_camera)
        self.drops = DropCounter(self.get_logger())
        self.info = {}
        self.odometry = None
        self.last_ns = None
        self.frames = 0
        qos = input_qos(r.reliable, r.queue_size)
        if self.mono:
            self.create_subscription(CameraInfo, 'camera_info',
                                     lambda m: self._on_info('left', m), qos)
        else:
            for side in ('left', 'right'):
                self.create_subscription(CameraInfo, f'{side}/camera_info',
                                         lambda m, s=side: self._on_info(s, m), qos)
        self.create_subscription(PointCloud2, 'features/matches', self._on_matches,
                                 input_qos(True, max(r.queue_size, 100)))
        self.pub_odom = self.create_publisher(Odometry, 'odom', 10)
        self.pub_path = self.create_publisher(Path, 'path', 10)
        self.pub_status = self.create_publisher(String, 'backend/status', 10)
        self.path = Path()
        self.path.header.frame_id = r.odom_frame
        self.tf = None
        if r.publish_tf:
            try:
                from tf2_ros import TransformBroadcaster
                self.tf = TransformBroadcaster(self)
            except ImportError:
                self.get_logger().info('tf2_ros is not installed: TF is off (odometry and path '
                                       'are still published)')

    def _on_info(self, side: str, msg: CameraInfo) -> None:
        if self.odometry is not None:
            return
        try:
            camera_info_projection(msg)
            self.info[side] = msg
            if self.mono or ('left' in self.info and 'right' in self.info):
                calib = calib_from_camera_info(self.info['left'], self.info.get('right'))
                from hndesc_ros.vo.odometry import MonoOdometry, StereoOdometry
                self.odometry = (MonoOdometry if self.mono else StereoOdometry)(calib, self.cfg.vo)
                self.get_logger().info(f'calibration: fx={calib.fx:.1f} baseline='
                                       f'{calib.baseline:.3f} m')
        except HndescError as exc:
            self.info.pop(side, None)
            self.drops.drop('bad_camera_info', str(exc))
            self._status()

    def _on_matches(self, msg: PointCloud2) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self.odometry is None:
            self.drops.drop('no_calibration', 'matches before valid camera_info')
            return self._status()
        try:
            check_match_layout(msg)
        except ValueError as exc:
            self.drops.drop('bad_layout', str(exc))
            return self._status()
        if self.last_ns is not None and stamp_ns <= self.last_ns:
            self.drops.drop('stamp_not_increasing', f'{stamp_ns} <= {self.last_ns} ns')
            return self._status()
        arr = np.frombuffer(bytes(msg.data), MATCH_DTYPE)
        obs = array_to_observations(arr, stamp_ns * 1e-9, self.frames)
        res = self.odometry.process(obs)
        self.last_ns = stamp_ns
        self.frames += 1
        self._publish(msg.header.stamp, res.T_world_cam)
        self._status()

    def _publish(self, stamp, T_world_cam: np.ndarray) -> None:
        r = self.cfg.ros
        T = self.T_base_cam @ T_world_cam @ inv(self.T_base_cam)  # odom -> base_link
        q = to_quat(T[:3, :3])
        odom = Odometry()
        odom.header.stamp = stamp
        odom.header.frame_id = r.odom_frame
        odom.child_frame_id = r.base_frame
        p = odom.pose.pose
        p.position.x, p.position.y, p.position.z = (float(v) for v in T[:3, 3])
        p.orientation.x, p.orientation.y, p.orientation.z, p.orientation.w = (float(v) for v in q)
        self.pub_odom.publish(odom)
        ps = PoseStamped()
        ps.header = odom.header
        ps.pose = p
        self.path.header.stamp = stamp
        self.path.poses.append(ps)
        self.pub_path.publish(self.path)
        if self.tf is not None:
            tf = TransformStamped()
            tf.header = odom.header
            tf.child_frame_id = r.base_frame
            tf.transform.translation.x = p.position.x
            tf.transform.translation.y = p.position.y
            tf.transform.translation.z = p.position.z
            tf.transform.rotation = p.orientation
            self.tf.sendTransform(tf)

    def _status(self) -> None:
        lost = getattr(self.odometry, 'lost', 0)
        self.pub_status.publish(String(data=json.dumps(
            {'frames': self.frames, 'tracking_lost': lost, 'dropped': dict(self.drops.counts)})))


def main(args=None) -> int:
    return spin_node(BackendNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
