"""Conversions between ROS 2 messages and the library's types (no cv_bridge: it breaks on
numpy 2 from PyPI). Message layout of ``features/matches`` (sensor_msgs/PointCloud2), one point
per tracked left keypoint, little endian, 24 bytes a point:

    offset 0  track_id  INT32    persistent track id
    offset 4  u         FLOAT32  left image column (px)
    offset 8  v         FLOAT32  left image row (px)
    offset 12 u_right   FLOAT32  right image column (px), NaN when unmatched in the right image
    offset 16 score     FLOAT32  keypoint score (> 0); 0: followed by KLT, not detected; -1:
                                 followed by KLT in a pair blurred for noise
    offset 20 noise     FLOAT32  localisation noise in units of vo.pixel_sigma (>= 1; from
                                 the keypoint's size; below 1 or NaN reads as 1)

The 20-byte layout without ``noise`` (recordings before the eighth session) is still read,
with noise 1. The header is the left image's header (stamp and frame id).

Every message the nodes publish is assembled here, by pure functions (no node, no rclpy), so
the nodes only subscribe, call the library and publish. Bad input raises the package's errors
(:class:`~hndesc_ros.errors.ImageError`, :class:`~hndesc_ros.errors.CalibrationError`,
:class:`~hndesc_ros.errors.MessageError`), all ValueErrors.
"""
from __future__ import annotations

from typing import Optional, Tuple

import cv2
import numpy as np
from geometry_msgs.msg import Pose, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from hndesc_ros.errors import CalibrationError, ImageError, MessageError
from hndesc_ros.se3 import from_xyzq, to_xyzq
from hndesc_ros.types import Observations, StereoCalib

MATCH_FIELDS = (('track_id', 0, PointField.INT32), ('u', 4, PointField.FLOAT32),
                ('v', 8, PointField.FLOAT32), ('u_right', 12, PointField.FLOAT32),
                ('score', 16, PointField.FLOAT32),
                ('noise', 20, PointField.FLOAT32))   # (name, offset, PointField datatype)
MATCH_DTYPE = np.dtype([('track_id', '<i4'), ('u', '<f4'), ('v', '<f4'), ('u_right', '<f4'),
                        ('score', '<f4'), ('noise', '<f4')])
LEGACY_MATCH_DTYPE = np.dtype([('track_id', '<i4'), ('u', '<f4'), ('v', '<f4'),
                               ('u_right', '<f4'), ('score', '<f4')])  # without noise
SUPPORTED_ENCODINGS = ('mono8', '8UC1', 'bgr8', 'rgb8', '8UC3')


def stamp_to_ns(stamp) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def image_to_numpy(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> (H, W) uint8 or (H, W, 3) BGR uint8; ImageError otherwise."""
    enc = msg.encoding
    if enc not in SUPPORTED_ENCODINGS:
        raise ImageError(f'unsupported image encoding {enc!r} (use mono8, bgr8 or rgb8)',
                         'bad_encoding')
    channels = 1 if enc in ('mono8', '8UC1') else 3
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.frombuffer(bytes(msg.data), np.uint8)
    if h == 0 or w == 0 or step < w * channels or len(data) < h * step:
        raise ImageError(f'image {w}x{h} ({enc}) has inconsistent size/step/data '
                         f'({step} B/row, {len(data)} B)', 'bad_image_size')
    img = data[:h * step].reshape(h, step)[:, :w * channels]
    img = img.reshape(h, w, channels) if channels == 3 else img
    if enc == 'rgb8':
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def stereo_to_numpy(left: Image, right: Optional[Image]
                    ) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Left (and right) Image -> numpy images of one size; ImageError otherwise."""
    lim = image_to_numpy(left)
    rim = image_to_numpy(right) if right is not None else None
    if rim is not None and rim.shape[:2] != lim.shape[:2]:
        raise ImageError(f'left {lim.shape[1]}x{lim.shape[0]} and right '
                         f'{rim.shape[1]}x{rim.shape[0]} sizes differ', 'stereo_size_mismatch')
    return lim, rim


def numpy_to_image(img: np.ndarray, header: Optional[Header] = None) -> Image:
    """(H, W) mono8 or (H, W, 3) BGR uint8 -> sensor_msgs/Image (default header: empty)."""
    enc = 'mono8' if img.ndim == 2 else 'bgr8'
    img = np.ascontiguousarray(img)
    return Image(header=header if header is not None else Header(), encoding=enc,
                 height=img.shape[0], width=img.shape[1], step=img.strides[0], is_bigendian=0,
                 data=img.tobytes())


def debug_image(header: Header, image: np.ndarray, obs: Observations) -> Image:
    """The tracked keypoints drawn on the left image: green with a stereo match (and a line to
    its right u), orange without."""
    vis = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image.copy()
    for (u, v), ur in zip(obs.uv, obs.u_right):
        stereo = bool(np.isfinite(ur))
        cv2.circle(vis, (int(u), int(v)), 3, (0, 255, 0) if stereo else (0, 160, 255), 1)
        if stereo:
            cv2.line(vis, (int(u), int(v)), (int(ur), int(v)), (255, 128, 0), 1)
    return numpy_to_image(vis, header)


def camera_info_projection(msg: CameraInfo) -> np.ndarray:
    """Validate a rectified CameraInfo and return its (3, 4) P; CalibrationError otherwise."""
    P = np.asarray(msg.p, float).reshape(3, 4)
    if not np.all(np.isfinite(P)) or P[0, 0] <= 0 or P[1, 1] <= 0:
        raise CalibrationError('camera_info has an empty or invalid projection matrix P')
    R = np.asarray(msg.r, float).reshape(3, 3)
    if np.any(R) and not np.allclose(R, np.eye(3), atol=1e-6):
        raise CalibrationError('camera_info R is not identity: images are not rectified '
                               '(run image_proc / stereo_image_proc first)')
    if np.any(np.asarray(msg.d, float)):
        raise CalibrationError('camera_info has distortion coefficients: expected rectified '
                               'images (left/image_rect) with zero distortion')
    return P


def camera_info_from_calib(calib: StereoCalib, side: str = 'left',
                           header: Optional[Header] = None) -> CameraInfo:
    """The rectified CameraInfo of one camera of ``calib`` (the inverse of
    :func:`calib_from_camera_info`): identity R, no distortion, P[0, 3] = -fx * baseline on
    the right."""
    tx = 0.0 if side == 'left' else -calib.fx * calib.baseline
    return CameraInfo(header=header if header is not None else Header(),
                      width=int(calib.width), height=int(calib.height), d=[0.0] * 5,
                      r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                      p=[calib.fx, 0.0, calib.cx, tx, 0.0, calib.fy, calib.cy, 0.0,
                         0.0, 0.0, 1.0, 0.0])


def calib_from_camera_info(left: CameraInfo, right: Optional[CameraInfo] = None
                           ) -> StereoCalib:
    """Rectified StereoCalib from left (and right) CameraInfo; baseline from right P[0, 3]."""
    P0 = camera_info_projection(left)
    P1 = camera_info_projection(right) if right is not None else None
    calib = StereoCalib.from_projections(P0, P1, int(left.width), int(left.height))
    if right is not None and calib.baseline <= 0:
        raise CalibrationError('right camera_info P[0, 3] gives no positive baseline')
    return calib


def observations_to_array(obs: Observations) -> np.ndarray:
    """Observations -> structured array with MATCH_DTYPE."""
    arr = np.zeros(len(obs), MATCH_DTYPE)
    arr['track_id'], arr['u'], arr['v'] = obs.track_ids, obs.uv[:, 0], obs.uv[:, 1]
    arr['u_right'], arr['score'], arr['noise'] = obs.u_right, obs.scores, obs.noise
    return arr


def array_to_observations(arr: np.ndarray, stamp: float, index: int = 0) -> Observations:
    """Structured array -> Observations (whose noise below 1 or NaN reads as 1)."""
    return Observations(stamp, index, arr['track_id'].astype(np.int64),
                        np.stack([arr['u'], arr['v']], 1).astype(np.float32),
                        arr['u_right'].astype(np.float32), arr['score'].astype(np.float32),
                        noise=arr['noise'])


def _array_to_cloud(arr: np.ndarray, fields, header: Header) -> PointCloud2:
    """Structured array -> dense unorganised PointCloud2 with the given field layout."""
    return PointCloud2(header=header, height=1, width=len(arr),
                       fields=[PointField(name=n, offset=o, datatype=d, count=1)
                               for n, o, d in fields],
                       is_bigendian=False, point_step=arr.dtype.itemsize,
                       row_step=arr.dtype.itemsize * len(arr), data=arr.tobytes(),
                       is_dense=True)


def _cloud_to_array(msg: PointCloud2, fields, dtype: np.dtype, topic: str) -> np.ndarray:
    """PointCloud2 -> structured array; MessageError unless the layout is exactly ``fields``."""
    got = tuple((f.name, int(f.offset), int(f.datatype)) for f in msg.fields)
    if got != fields or int(msg.point_step) != dtype.itemsize or msg.is_bigendian:
        raise MessageError(f'{topic} has an unknown field layout {got}')
    if len(msg.data) != int(msg.point_step) * int(msg.width) * int(msg.height):
        raise MessageError(f'{topic} data size does not match width * point_step')
    return np.frombuffer(bytes(msg.data), dtype)


def _match_array(msg: PointCloud2) -> np.ndarray:
    """``features/matches`` -> MATCH_DTYPE array; the 20-byte layout without ``noise``
    (before the eighth session) reads with noise 1; MessageError for any other layout."""
    if len(msg.fields) == len(MATCH_FIELDS) - 1:
        old = _cloud_to_array(msg, MATCH_FIELDS[:-1], LEGACY_MATCH_DTYPE, 'features/matches')
        arr = np.zeros(len(old), MATCH_DTYPE)
        for name in LEGACY_MATCH_DTYPE.names:
            arr[name] = old[name]
        arr['noise'] = 1.0
        return arr
    return _cloud_to_array(msg, MATCH_FIELDS, MATCH_DTYPE, 'features/matches')


def check_match_layout(msg: PointCloud2) -> None:
    """Raise MessageError unless a PointCloud2 has the documented field layout (or the
    20-byte one before ``noise``)."""
    _match_array(msg)


def observations_to_cloud(obs: Observations, header: Header) -> PointCloud2:
    """Observations -> ``features/matches`` PointCloud2 (layout above) with ``header``."""
    return _array_to_cloud(observations_to_array(obs), MATCH_FIELDS, header)


def cloud_to_observations(msg: PointCloud2, index: int = 0) -> Observations:
    """``features/matches`` PointCloud2 -> Observations stamped with the header's stamp;
    MessageError when the layout is not the documented one."""
    return array_to_observations(_match_array(msg), stamp_to_ns(msg.header.stamp) * 1e-9,
                                 index)


LANDMARK_FIELDS = (('track_id', 0, PointField.INT32), ('x', 4, PointField.FLOAT64),
                   ('y', 12, PointField.FLOAT64), ('z', 20, PointField.FLOAT64))
LANDMARK_DTYPE = np.dtype([('track_id', '<i4'), ('x', '<f8'), ('y', '<f8'), ('z', '<f8')])


def landmarks_to_cloud(ids: np.ndarray, points: np.ndarray, header: Header) -> PointCloud2:
    """Refined landmarks -> ``backend/landmarks`` PointCloud2: ``track_id`` INT32 and x y z
    FLOAT64 (the tracker gets the mapper's exact values) in the VO world frame, 28 bytes a
    point. The VO world is the camera of the back end's first frame, whose stamp the back end
    puts in ``header.stamp`` (the front end applies the positions only when its own first frame
    had that stamp)."""
    arr = np.zeros(len(ids), LANDMARK_DTYPE)
    arr['track_id'] = ids
    if len(ids):
        arr['x'], arr['y'], arr['z'] = np.asarray(points, float).reshape(-1, 3).T
    return _array_to_cloud(arr, LANDMARK_FIELDS, header)


def cloud_to_landmarks(msg: PointCloud2) -> Tuple[np.ndarray, np.ndarray]:
    """``backend/landmarks`` PointCloud2 -> ((K,) int64 ids, (K, 3) float64 points);
    MessageError when the layout is not the documented one."""
    arr = _cloud_to_array(msg, LANDMARK_FIELDS, LANDMARK_DTYPE, 'backend/landmarks')
    return (arr['track_id'].astype(np.int64),
            np.stack([arr['x'], arr['y'], arr['z']], 1).astype(np.float64))


def odometry_messages(stamp, T_odom_base: np.ndarray, odom_frame: str, base_frame: str
                      ) -> Tuple[Odometry, PoseStamped, TransformStamped]:
    """One body pose as the three messages the back end publishes.

    Args:
        stamp: builtin_interfaces/Time of the image the pose belongs to.
        T_odom_base: (4, 4) pose of ``base_frame`` in ``odom_frame`` (REP-105).
        odom_frame, base_frame: frame ids (header and child).
    Returns:
        nav_msgs/Odometry, the PoseStamped for nav_msgs/Path, and the TF TransformStamped.
    """
    x, y, z, qx, qy, qz, qw = (float(v) for v in to_xyzq(T_odom_base))
    header = Header(stamp=stamp, frame_id=odom_frame)
    odom = Odometry(header=header, child_frame_id=base_frame)
    pose = odom.pose.pose
    pose.position.x, pose.position.y, pose.position.z = x, y, z
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = \
        qx, qy, qz, qw
    tf = TransformStamped(header=header, child_frame_id=base_frame)
    t = tf.transform.translation
    t.x, t.y, t.z = x, y, z
    tf.transform.rotation = pose.orientation
    return odom, PoseStamped(header=header, pose=pose), tf


def pose_to_matrix(pose: Pose) -> np.ndarray:
    """geometry_msgs/Pose -> (4, 4) transform."""
    p, q = pose.position, pose.orientation
    return from_xyzq([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
