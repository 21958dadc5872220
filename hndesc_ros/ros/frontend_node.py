"""Front-end node: rectified stereo images -> tracked features on ``features/matches``.

Subscribes (relative, remappable): ``left/image_rect``, ``right/image_rect``,
``left/camera_info``, ``right/camera_info`` (or ``image`` + ``camera_info`` with vo.mono).
The tracker projects its local map with the camera model, so the front end starts once
CameraInfo has arrived (stereo pairs that come earlier wait, up to ``ros.queue_size``).
With ``ros.drop_stale`` (default, live cameras) pairs are processed in a worker thread and the
newest complete pair replaces one still waiting (counted as ``stale_dropped``): latency stays
bounded at any input rate. Without it every pair is processed in order (exact bag replay).
It also subscribes ``backend/landmarks`` (landmark positions refined by the back end's mapper,
applied to the local map) and ``backend/disparity_offset`` (std_msgs/Float32: the px the back
end removes from right u, which the local map's new landmarks then use too).
Publishes: ``features/matches`` (PointCloud2, layout in conversions.py), ``features/timing``
(std_msgs/String, JSON of milliseconds per stage), ``features/debug_image`` (only while someone
subscribes), ``frontend/status`` (String, JSON: frames processed, bad inputs dropped by reason,
stale pairs replaced, pairs whose light the front end stretched or blurred).
"""
from __future__ import annotations

import json
import math
from collections import deque
from typing import Dict, Optional

from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Float32, String

from hndesc_ros.errors import HndescError
from hndesc_ros.ros.common import DropCounter, spin_node, subscribe_camera_info, topic_qos
from hndesc_ros.ros.conversions import (calib_from_camera_info, camera_info_projection,
                                        cloud_to_landmarks, debug_image, observations_to_cloud,
                                        stamp_to_ns, stereo_to_numpy)
from hndesc_ros.ros.params import declare_config
from hndesc_ros.ros.sync import LatestWorker, StereoSynchronizer
from hndesc_ros.types import MAX_DISPARITY_OFFSET_PX


class FrontendNode(Node):
    """Thin wrapper over :class:`hndesc_ros.vo.pipeline.StereoFrontend`."""

    def __init__(self, **kwargs) -> None:
        super().__init__('frontend_node', **kwargs)
        self.cfg = declare_config(self, ('features', 'matching', 'vo', 'ros'))
        from hndesc_ros.vo.pipeline import feature_source
        # CPU path, or the static GPU front end with features.device cuda; weights load (and
        # fail, with one line) at start-up
        self.extractor = feature_source(self.cfg)
        self.frontend = None                            # built once CameraInfo is in
        self.origin_ns: Optional[int] = None            # stamp of the first tracked frame
        self.info: Dict[str, CameraInfo] = {}
        r = self.cfg.ros
        # pairs before calibration: only the newest matters when the latest pair wins
        self.waiting: deque = deque(maxlen=1 if r.drop_stale else max(r.queue_size, 1))
        qos = topic_qos(r.reliable, r.queue_size)
        self.mono = self.cfg.vo.mono
        self.drops = DropCounter(self.get_logger())
        self.frames = 0
        self.last_ns = None
        self.sync = StereoSynchronizer(int(r.sync_tolerance * 1e9), r.queue_size)
        self.landmarks: deque = deque()  # refined by the back end, applied before a frame
        self.worker = (LatestWorker(lambda item: self._process(*item), 'hndesc-frontend',
                                    self._internal_error) if r.drop_stale else None)
        self.newest_ns: Optional[int] = None  # newest stamp handed to the worker
        if self.mono:
            self.create_subscription(Image, 'image', self._on_mono, qos)
        else:
            self.create_subscription(Image, 'left/image_rect', lambda m: self._on_image('left', m),
                                     qos)
            self.create_subscription(Image, 'right/image_rect',
                                     lambda m: self._on_image('right', m), qos)
        subscribe_camera_info(self, self.mono, self._on_info, qos)
        self.create_subscription(PointCloud2, 'backend/landmarks', self._on_landmarks,
                                 topic_qos(True, 10))
        self.disparity_offset: Optional[float] = None  # from the back end, for the next frame
        self.create_subscription(Float32, 'backend/disparity_offset', self._on_offset,
                                 topic_qos(True, 10))
        # transient-local: a back end that joins late (DDS discovery under load) and asks for
        # it (exact replay) still gets the last 100 frames' matches; volatile ones match too
        out_qos = topic_qos(True, max(r.queue_size, 100), late_joiners=True)
        self.pub_matches = self.create_publisher(PointCloud2, 'features/matches', out_qos)
        self.pub_timing = self.create_publisher(String, 'features/timing', 10)
        self.pub_debug = self.create_publisher(Image, 'features/debug_image', 1)
        self.pub_status = self.create_publisher(String, 'frontend/status', 10)
        self.get_logger().info(f'front end ready: extractor={self.cfg.features.extractor} '
                               f'keypoints={self.cfg.features.keypoints} '
                               f'backend={self.cfg.features.backend} mono={self.mono}')

    # ------------------------------------------------------------------ callbacks
    def _on_info(self, side: str, msg: CameraInfo) -> None:
        """Validate every CameraInfo; the first valid one (both sides in stereo) starts the
        front end, which then processes the pairs that were waiting."""
        try:
            camera_info_projection(msg)
        except HndescError as exc:
            self.drops.drop('bad_camera_info', str(exc))
            return self._status()
        if self.frontend is not None:
            return
        self.info[side] = msg
        if not (self.mono or len(self.info) == 2):
            return
        try:
            calib = calib_from_camera_info(self.info['left'], self.info.get('right'))
        except HndescError as exc:
            self.info.clear()
            self.drops.drop('bad_camera_info', str(exc))
            return self._status()
        from hndesc_ros.vo.pipeline import StereoFrontend
        self.frontend = StereoFrontend(calib, self.cfg, self.extractor)
        while self.waiting:
            self._accept(*self.waiting.popleft())

    def _on_landmarks(self, msg: PointCloud2) -> None:
        if self.frontend is None:
            return
        if stamp_to_ns(msg.header.stamp) != self.origin_ns:
            # the back end's world starts at another frame (it missed our first ones)
            self.drops.drop('landmarks_other_origin', 'backend/landmarks origin '
                            f'{stamp_to_ns(msg.header.stamp)} ns != {self.origin_ns} ns')
            return self._status()
        try:
            self.landmarks.append(cloud_to_landmarks(msg))
        except HndescError as exc:
            self.drops.drop('bad_landmarks', str(exc))
            return self._status()

    def _on_offset(self, msg: Float32) -> None:
        if math.isfinite(msg.data) and abs(msg.data) <= MAX_DISPARITY_OFFSET_PX:
            self.disparity_offset = float(msg.data)  # the latest wins

    def _on_image(self, side: str, msg: Image) -> None:
        stamp = stamp_to_ns(msg.header.stamp)
        before = sum(self.sync.dropped.values())
        for ts, left, right in self.sync.push(side, stamp, msg):
            self._accept(ts, left, right)
        lost = sum(self.sync.dropped.values()) - before
        for _ in range(lost):
            self.drops.drop('unpaired_image', 'no stereo partner with a matching stamp')
        if lost:
            self._status()

    def _on_mono(self, msg: Image) -> None:
        self._accept(stamp_to_ns(msg.header.stamp), msg, None)

    def _accept(self, stamp_ns: int, lmsg: Image, rmsg: Optional[Image]) -> None:
        """A complete pair (or mono frame): wait for calibration, or go to the worker (latest
        wins), or be processed now (every frame in order)."""
        if self.frontend is None:
            if len(self.waiting) == self.waiting.maxlen:
                self.drops.drop('no_calibration', 'stereo pair before camera_info')
            self.waiting.append((stamp_ns, lmsg, rmsg))
        elif self.worker is not None:
            if self._out_of_order(stamp_ns, self.newest_ns):  # never replaces a newer pair
                return
            self.newest_ns = stamp_ns
            if self.worker.submit((stamp_ns, lmsg, rmsg)):
                self._status()
        else:
            self._process(stamp_ns, lmsg, rmsg)

    def _process(self, stamp_ns: int, lmsg: Image, rmsg: Optional[Image]) -> None:
        while self.landmarks:
            self.frontend.tracker_update(*self.landmarks.popleft())
        self.frontend.set_disparity_offset(self.disparity_offset)  # None: unchanged
        if self._out_of_order(stamp_ns, self.last_ns):
            return
        try:
            left, right = stereo_to_numpy(lmsg, rmsg)
            obs = self.frontend.process(left, right, stamp_ns * 1e-9, self.frames)
        except HndescError as exc:
            self.drops.drop(exc.reason, str(exc))  # bad_encoding, bad_image_size, ...
            return self._status()
        except Exception as exc:  # a bug or a library failure: this frame only
            return self._internal_error(exc)
        self.last_ns = stamp_ns
        if self.origin_ns is None:
            self.origin_ns = stamp_ns  # this frame's camera is the VO world
        self.frames += 1
        self.pub_matches.publish(observations_to_cloud(obs, lmsg.header))
        self.pub_timing.publish(String(data=json.dumps(
            {k: round(v, 2) for k, v in obs.timings.items()})))
        if self.pub_debug.get_subscription_count() > 0:
            self.pub_debug.publish(debug_image(lmsg.header, left, obs))
        self._status()

    def _out_of_order(self, stamp_ns: int, previous: Optional[int]) -> bool:
        """Drop and count a pair whose stamp repeats (``duplicate_stamp``) or precedes
        (``stamp_backwards``) ``previous``; False when it is newer."""
        if previous is None or stamp_ns > previous:
            return False
        if stamp_ns == previous:
            self.drops.drop('duplicate_stamp', f'stamp {stamp_ns} ns seen already')
        else:
            self.drops.drop('stamp_backwards', f'{stamp_ns} < {previous} ns')
        self._status()
        return True

    def _internal_error(self, exc: BaseException) -> None:
        """An unexpected exception while processing a frame: the node keeps running."""
        self.drops.internal_error(exc)
        self._status()

    def destroy_node(self) -> None:
        if self.worker is not None:
            self.worker.stop(0.8)  # the frame in progress finishes, the waiting one is dropped
        if self.frontend is not None:
            self.frontend.close()
        self.extractor.close()  # the SIFT worker threads (CPU path)
        super().destroy_node()

    def _status(self) -> None:
        stale = self.worker.stale if self.worker is not None else 0
        tracker = self.frontend.tracker if self.frontend is not None else None
        self.pub_status.publish(String(data=json.dumps(
            {'frames': self.frames, 'dropped': dict(self.drops.counts), 'stale_dropped': stale,
             'tracking_lost': getattr(tracker, 'lost', 0),
             'relocalised': getattr(tracker, 'relocalised', 0),
             'pairs_stretched': getattr(self.frontend, 'stretched', 0),
             'pairs_blurred': getattr(self.frontend, 'blurred', 0)})))


def main(args=None) -> int:
    return spin_node(FrontendNode, args)


if __name__ == '__main__':
    raise SystemExit(main())
