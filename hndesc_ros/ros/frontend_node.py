"""Front-end node: rectified stereo images -> tracked features on ``features/matches``.

Subscribes (relative, remappable): ``left/image_rect``, ``right/image_rect``,
``left/camera_info``, ``right/camera_info`` (or ``image`` + ``camera_info`` with vo.mono).
Publishes: ``features/matches`` (PointCloud2, layout in conversions.py), ``features/timing``
(std_msgs/String, JSON of milliseconds per stage), ``features/debug_image`` (only while someone
subscribes), ``frontend/status`` (String, JSON counters of processed and dropped inputs).
"""
from __future__ import annotations

import json

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import String

from hndesc_ros.errors import HndescError
from hndesc_ros.ros.common import DropCounter, input_qos, spin_node
from hndesc_ros.ros.conversions import (MATCH_FIELDS, camera_info_projection, image_to_numpy,
                                        numpy_to_image_fields, observations_to_array,
                                        stamp_to_ns)
from hndesc_ros.ros.params import declare_config
from hndesc_ros.ros.sync import StereoSynchronizer


class FrontendNode(Node):
    """Thin wrapper over :class:`hndesc_ros.vo.pipeline.StereoFrontend`."""

    def __init__(self, **kwargs):
        super().__init__('frontend_node', **kwargs)
        self.cfg = declare_config(self, ('features', 'matching', 'vo', 'ros'))
        from hndesc_ros.vo.pipeline import StereoFrontend
        self.frontend = StereoFrontend(self.cfg)
        r = self.cfg.ros
        qos = input_qos(r.reliable, r.queue_size)
        self.mono = self.cfg.vo.mono
        self.drops = DropCounter(self.get_logger())
        self.frames = 0
        self.last_ns = None
        self.calib = {}
        self.sync = StereoSynchronizer(int(r.sync_tolerance * 1e9), r.queue_size)
        if self.mono:
            self.create_subscription(Image, 'image', self._on_mono, qos)
            self.create_subscription(CameraInfo, 'camera_info',
                                     lambda m: self._on_info('left', m), qos)
        else:
            self.create_subscription(Image, 'left/image_rect', lambda m: self._on_image('left', m),
                                     qos)
            self.create_subscription(Image, 'right/image_rect',
                                     lambda m: self._on_image('right', m), qos)
            for side in ('left', 'right'):
                self.create_subscription(CameraInfo, f'{side}/camera_info',
                                         lambda m, s=side: self._on_info(s, m), qos)
        out_qos = input_qos(True, max(r.queue_size, 100))
        self.pub_matches = self.create_publisher(PointCloud2, 'features/matches', out_qos)
        self.pub_timing = self.create_publisher(String, 'features/timing', 10)
        self.pub_debug = self.create_publisher(Image, 'features/debug_image', 1)
        self.pub_status = self.create_publisher(String, 'frontend/status', 10)
        self.get_logger().info(f'front end ready: extractor={self.cfg.features.extractor} '
                               f'keypoints={self.cfg.features.keypoints} '
                               f'backend={self.cfg.features.backend} mono={self.mono}')

    # ------------------------------------------------------------------ callbacks
    def _on_info(self, side: str, msg: CameraInfo) -> None:
        try:
            camera_info_projection(msg)
            self.calib[side] = msg
        except HndescError as exc:
            self.drops.drop('bad_camera_info', str(exc))
            self._status()

    def _on_image(self, side: str, msg: Image) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        before = sum(self.sync.dropped.values())
        for ts, left, right in self.sync.push(side, stamp, msg):
            self._process(ts, left, right)
        lost = sum(self.sync.dropped.values()) - before
        for _ in range(lost):
            self.drops.drop('unpaired_image', 'no stereo partner with a matching stamp')
        if lost:
            self._status()

    def _on_mono(self, msg: Image) -> None:
        self._process(stamp_to_ns(msg.header.stamp), msg, None)

    def _process(self, stamp_ns: int, lmsg: Image, rmsg) -> None:
        if self.last_ns is not None and stamp_ns == self.last_ns:
            self.drops.drop('duplicate_stamp', f'stamp {stamp_ns} ns seen already')
            return self._status()
        if self.last_ns is not None and stamp_ns < self.last_ns:
            self.drops.drop('stamp_backwards', f'{stamp_ns} < {self.last_ns} ns')
            return self._status()
        try:
            left = image_to_numpy(lmsg)
            right = image_to_numpy(rmsg) if rmsg is not None else None
            if right is not None and right.shape[:2] != left.shape[:2]:
                raise HndescError(f'left {left.shape[1]}x{left.shape[0]} and right '
                                  f'{right.shape[1]}x{right.shape[0]} sizes differ')
            obs = self.frontend.process(left, right, stamp_ns * 1e-9, self.frames)
        except HndescError as exc:
            self.drops.drop('bad_image', str(exc))
            return self._status()
        self.last_ns = stamp_ns
        self.frames += 1
        self.pub_matches.publish(self._cloud(lmsg.header, obs))
        self.pub_timing.publish(String(data=json.dumps(
            {k: round(v, 2) for k, v in obs.timings.items()})))
        if self.pub_debug.get_subscription_count() > 0:
            self._publish_debug(lmsg.header, left, obs)
        self._status()

    # ------------------------------------------------------------------ outputs
    @staticmethod
    def _cloud(header, obs) -> PointCloud2:
        arr = observations_to_array(obs)
        msg = PointCloud2()
        msg.header = header
        msg.height, msg.width = 1, len(arr)
        msg.fields = [PointField(name=n, offset=o, datatype=d, count=1)
                      for n, o, d in MATCH_FIELDS]
        msg.is_bigendian = False
        msg.point_step = arr.dtype.itemsize
        msg.row_step = msg.point_step * len(arr)
        msg.data = arr.tobytes()
        msg.is_dense = True
        return msg

    def _publish_debug(self, header, image: np.ndarray, obs) -> None:
        import cv2
        vis = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
        for (u, v), ur, tid in zip(obs.uv, obs.u_right, obs.track_ids):
            color = (0, 255, 0) if np.isfinite(ur) else (0, 160, 255)
            cv2.circle(vis, (int(u), int(v)), 3, color, 1)
            if np.isfinite(ur):
                cv2.line(vis, (int(u), int(v)), (int(ur), int(v)), (255, 128, 0), 1)
        msg = Image(header=header, **numpy_to_image_fields(vis))
        self.pub_debug.publish(msg)

    def _status(self) -> None:
        self.pub_status.publish(String(data=json.dumps(
            {'frames': self.frames, 'dropped': dict(self.drops.counts)})))


def main(args=None) -> int:
    return spin_node(FrontendNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
