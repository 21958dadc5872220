"""Back-end node: tracked features -> GTSAM VO -> odometry, path and TF (REP-105).

Subscribes: ``features/matches`` (PointCloud2 from the front end), ``left/camera_info`` and
``right/camera_info`` (the baseline comes from the right P[0, 3]; ``camera_info`` in mono).
Publishes: ``odom`` (nav_msgs/Odometry, ``odom`` -> ``base_link``), ``path`` (nav_msgs/Path,
the last ``ros.path_length`` poses, sent only while someone subscribes: it grows), TF
``odom`` -> ``base_link`` through tf2_ros where it is installed, ``backend/status``.
Stamps are the image stamps carried by the matches' header. Matches that arrive before a
valid camera_info wait for it (up to ``ros.queue_size``; beyond: ``no_calibration``).
"""
from __future__ import annotations

import json
from collections import deque

import numpy as np
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, PointCloud2
from std_msgs.msg import Float32, Header, String

from hndesc_ros.errors import HndescError
from hndesc_ros.ros.common import DropCounter, spin_node, subscribe_camera_info, topic_qos
from hndesc_ros.ros.conversions import (calib_from_camera_info, camera_info_projection,
                                        cloud_to_observations, landmarks_to_cloud,
                                        odometry_messages, stamp_to_ns)
from hndesc_ros.ros.params import declare_config
from hndesc_ros.se3 import camera_to_base, from_xyzq
from hndesc_ros.vo.odometry import MonoOdometry, StereoOdometry, load_backend


class BackendNode(Node):
    """Thin wrapper over :class:`hndesc_ros.vo.odometry.StereoOdometry` (or MonoOdometry)."""

    def __init__(self, **kwargs) -> None:
        super().__init__('backend_node', **kwargs)
        self.cfg = declare_config(self, ('vo', 'ros'))
        r = self.cfg.ros
        self.mono = self.cfg.vo.mono
        self.T_base_cam = from_xyzq(r.base_to_camera)
        self.drops = DropCounter(self.get_logger())
        self.info = {}
        depth = max(r.queue_size, 100)  # of the features/matches subscription
        # matches before calibration; in exact replay as many as the subscription's history
        self.waiting: deque = deque(maxlen=max(r.queue_size, 1) if r.drop_stale else depth)
        self.odometry = None
        self.origin = None
        self.last_ns = None
        self.frames = 0
        load_backend(self.cfg.vo)  # GTSAM now, not inside the first frame's latency
        subscribe_camera_info(self, self.mono, self._on_info,
                              topic_qos(r.reliable, r.queue_size))
        # exact replay (every pair, ros.drop_stale false): also the matches the front end
        # sent before this node was discovered (transient-local; the front end offers it);
        # live: only new ones (a late back end must not start 100 frames behind)
        self.create_subscription(PointCloud2, 'features/matches', self._on_matches,
                                 topic_qos(True, depth, late_joiners=not r.drop_stale))
        # a recorder that starts after the first poses still gets the last 100
        self.pub_odom = self.create_publisher(Odometry, 'odom', topic_qos(True, 100, True))
        self.pub_path = self.create_publisher(Path, 'path', 10)
        self.pub_status = self.create_publisher(String, 'backend/status', 10)
        self.pub_landmarks = self.create_publisher(PointCloud2, 'backend/landmarks',
                                                   topic_qos(True, 10))
        self.pub_offset = self.create_publisher(Float32, 'backend/disparity_offset',
                                                topic_qos(True, 10))
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
        """Validate every CameraInfo (bad ones are counted); the first valid one (both sides
        in stereo) starts the odometry."""
        try:
            camera_info_projection(msg)
            if self.odometry is not None:
                return
            self.info[side] = msg
            if self.mono or ('left' in self.info and 'right' in self.info):
                calib = calib_from_camera_info(self.info['left'], self.info.get('right'))
                self.odometry = (MonoOdometry if self.mono else StereoOdometry)(calib, self.cfg.vo)
                self.get_logger().info(f'calibration: fx={calib.fx:.1f} baseline='
                                       f'{calib.baseline:.3f} m')
                while self.waiting:  # matches that came first (their camera_info was late)
                    self._on_matches(self.waiting.popleft())
        except HndescError as exc:
            self.info.pop(side, None)
            self.drops.drop(exc.reason, str(exc))
            self._status()

    def _on_matches(self, msg: PointCloud2) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self.odometry is None:  # wait for camera_info, as the front end does
            if len(self.waiting) == self.waiting.maxlen:
                self.drops.drop('no_calibration', 'matches before valid camera_info')
                self._status()
            self.waiting.append(msg)
            return
        try:
            obs = cloud_to_observations(msg, self.frames)
        except HndescError as exc:
            self.drops.drop('bad_layout', str(exc))
            return self._status()
        if self.last_ns is not None and stamp_ns <= self.last_ns:
            self.drops.drop('stamp_not_increasing', f'{stamp_ns} <= {self.last_ns} ns')
            return self._status()
        try:
            res = self.odometry.process(obs, defer_mapping=True)
        except Exception as exc:  # a bug or a library failure: this frame only
            self.drops.internal_error(exc)
            return self._status()
        self.last_ns = stamp_ns
        self.frames += 1
        self._publish(msg.header.stamp, res.T_world_cam)  # the pose does not wait for mapping
        try:
            self.odometry.map_pending()
        except Exception as exc:
            self.drops.internal_error(exc)
        if self.origin is None:
            self.origin = msg.header.stamp  # the frame whose camera is the VO world
        updates = self.odometry.map_updates()  # empty unless vo.share_map
        for u in updates:
            header = Header(stamp=self.origin, frame_id=msg.header.frame_id)
            self.pub_landmarks.publish(landmarks_to_cloud(u.track_ids, u.points, header))
        offset = getattr(self.odometry, 'offset', None)
        # once estimated (a restarted back end must not reset the front end's value to 0)
        if updates and offset is not None and offset.pairs >= offset.min_pairs:
            self.pub_offset.publish(Float32(data=float(offset.value)))
        self._status()

    def destroy_node(self) -> None:
        if self.odometry is not None:
            self.odometry.close()  # stops the background mapper process
        super().destroy_node()

    def _publish(self, stamp, T_world_cam: np.ndarray) -> None:
        r = self.cfg.ros
        T_odom_base = camera_to_base(T_world_cam, self.T_base_cam)
        odom, pose, tf = odometry_messages(stamp, T_odom_base, r.odom_frame, r.base_frame)
        self.pub_odom.publish(odom)
        self.path.header.stamp = stamp
        self.path.poses.append(pose)
        if r.path_length and len(self.path.poses) > r.path_length:
            del self.path.poses[0]  # a robot runs for hours: memory and message stay bounded
        if self.pub_path.get_subscription_count():  # 10,000 poses take 37 ms to publish
            self.pub_path.publish(self.path)
        if self.tf is not None:
            self.tf.sendTransform(tf)

    def _status(self) -> None:
        odo = self.odometry
        self.pub_status.publish(String(data=json.dumps(
            {'frames': self.frames, 'tracking_lost': getattr(odo, 'lost', 0),
             'smoother_resets': getattr(odo, 'resets', 0),
             'smoother_rebuilds': getattr(odo, 'rebuilds', 0),
             'stationary': getattr(odo, 'stationary', 0),
             'disparity_offset_px': (round(odo.offset.value, 4) if hasattr(odo, 'offset')
                                     else None),
             'dropped': dict(self.drops.counts)})))


def main(args=None) -> int:
    return spin_node(BackendNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
