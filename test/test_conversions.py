"""Message assembly of hndesc_ros.ros.conversions: pure functions, no node and no rclpy.init."""
import numpy as np
import pytest
from builtin_interfaces.msg import Time
from sensor_msgs.msg import CameraInfo, PointCloud2, PointField
from std_msgs.msg import Header

from hndesc_ros.errors import CalibrationError, ImageError, MessageError
from hndesc_ros.ros.conversions import (MATCH_FIELDS, calib_from_camera_info,
                                        camera_info_from_calib, cloud_to_landmarks,
                                        cloud_to_observations, debug_image,
                                        image_to_numpy, landmarks_to_cloud,
                                        numpy_to_image, observations_to_cloud,
                                        odometry_messages, pose_to_matrix, stamp_to_ns,
                                        stereo_to_numpy)
from hndesc_ros.se3 import from_quat, make_T
from hndesc_ros.types import Observations


def _obs(n=5):
    rng = np.random.default_rng(0)
    u_right = rng.uniform(0, 100, n).astype(np.float32)
    u_right[1] = np.nan
    return Observations(0.0, 0, np.arange(n, dtype=np.int64) * 7,
                        rng.uniform(0, 100, (n, 2)).astype(np.float32), u_right,
                        rng.uniform(0, 1, n).astype(np.float32),
                        noise=rng.uniform(1, 3, n).astype(np.float32))


def test_cloud_roundtrip_keeps_observations_and_header():
    obs = _obs()
    header = Header(stamp=Time(sec=12, nanosec=500_000_000), frame_id='left_camera_optical')
    cloud = observations_to_cloud(obs, header)
    assert cloud.header.frame_id == 'left_camera_optical'
    assert (cloud.width, cloud.height, cloud.point_step) == (5, 1, 24)
    assert tuple((f.name, f.offset, f.datatype) for f in cloud.fields) == MATCH_FIELDS
    back = cloud_to_observations(cloud, index=3)
    assert back.stamp == pytest.approx(12.5) and back.index == 3
    assert np.array_equal(back.track_ids, obs.track_ids)
    assert np.array_equal(back.uv, obs.uv)
    assert np.array_equal(back.u_right, obs.u_right, equal_nan=True)
    assert np.array_equal(back.scores, obs.scores)
    assert np.array_equal(back.noise, obs.noise)


def test_cloud_noise_below_one_reads_as_one():
    """A keypoint's localisation noise is at least the pixel sigma: a publisher's 0, negative
    or NaN (an all-zero cloud) reads as 1, not as an infinitely precise measurement."""
    obs = _obs()
    obs.noise[:] = [0.0, -1.0, np.nan, 0.5, 2.5]
    back = cloud_to_observations(observations_to_cloud(obs, Header()))
    assert np.array_equal(back.noise, np.array([1.0, 1.0, 1.0, 1.0, 2.5], np.float32))


def test_cloud_with_unknown_layout_or_size_is_a_message_error():
    cloud = observations_to_cloud(_obs(), Header())
    cloud.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
                    for i, n in enumerate('xyzab')]
    with pytest.raises(MessageError, match='field layout'):
        cloud_to_observations(cloud)
    short = observations_to_cloud(_obs(), Header())
    short.data = bytes(short.data)[:-20]
    with pytest.raises(ValueError, match='data size'):   # MessageError is a ValueError
        cloud_to_observations(short)


def test_odometry_messages_carry_one_pose():
    T = make_T(from_quat([0.1, -0.2, 0.3, 0.9]), [1.0, -2.0, 3.0])
    stamp = Time(sec=4, nanosec=7)
    odom, pose, tf = odometry_messages(stamp, T, 'odom', 'base_link')
    assert (odom.header.frame_id, odom.child_frame_id) == ('odom', 'base_link')
    assert (tf.header.frame_id, tf.child_frame_id) == ('odom', 'base_link')
    assert stamp_to_ns(odom.header.stamp) == stamp_to_ns(pose.header.stamp) == 4 * 10**9 + 7
    assert np.allclose(pose_to_matrix(odom.pose.pose), T)
    assert np.allclose(pose_to_matrix(pose.pose), T)
    t, q = tf.transform.translation, tf.transform.rotation
    assert np.allclose([t.x, t.y, t.z], T[:3, 3])
    assert np.allclose(from_quat([q.x, q.y, q.z, q.w]), T[:3, :3])


@pytest.mark.parametrize('shape', [(6, 9), (6, 9, 3)])
def test_image_roundtrip(shape):
    img = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    msg = numpy_to_image(img, Header(frame_id='cam'))
    assert msg.encoding == ('mono8' if len(shape) == 2 else 'bgr8')
    assert msg.header.frame_id == 'cam'
    assert np.array_equal(image_to_numpy(msg), img)


def test_rgb8_becomes_bgr_and_bad_encodings_or_sizes_raise():
    img = np.random.default_rng(2).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    msg = numpy_to_image(img)
    msg.encoding = 'rgb8'
    assert np.array_equal(image_to_numpy(msg), img[:, :, ::-1])
    msg.encoding = 'mono16'
    with pytest.raises(ImageError, match='encoding'):
        image_to_numpy(msg)
    left, right = numpy_to_image(img[:, :, 0]), numpy_to_image(img[:-1, :, 0])
    with pytest.raises(ImageError, match='sizes differ'):
        stereo_to_numpy(left, right)
    lim, rim = stereo_to_numpy(left, None)
    assert rim is None and lim.shape == (4, 5)


def test_debug_image_is_bgr_of_the_input_size():
    img = np.zeros((120, 110), np.uint8)
    msg = debug_image(Header(frame_id='cam'), img, _obs())
    assert (msg.encoding, msg.height, msg.width) == ('bgr8', 120, 110)
    assert image_to_numpy(msg).any()   # something was drawn


def test_calibration_from_camera_info():
    def info(tx=0.0, d=0.0):
        return CameraInfo(width=640, height=480, d=[d] * 5,
                          r=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0],
                          p=[500.0, 0.0, 320.0, tx, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    calib = calib_from_camera_info(info(), info(tx=-500.0 * 0.5))
    assert calib.baseline == pytest.approx(0.5) and calib.fx == 500.0
    with pytest.raises(CalibrationError, match='distortion'):
        calib_from_camera_info(info(d=0.1))
    with pytest.raises(CalibrationError, match='baseline'):
        calib_from_camera_info(info(), info())


def test_camera_info_from_calib_roundtrip(kitti06):
    from hndesc_ros.datasets.kitti import KittiSequence
    calib = KittiSequence(kitti06, 0, 1).calib
    back = calib_from_camera_info(camera_info_from_calib(calib, 'left'),
                                  camera_info_from_calib(calib, 'right'))
    for key in ('fx', 'fy', 'cx', 'cy', 'baseline', 'width', 'height'):
        assert getattr(back, key) == pytest.approx(getattr(calib, key)), key


def test_landmark_cloud_roundtrip_and_layout_check():
    ids = np.array([3, 9, 12], np.int64)
    pts = np.array([[1.0, -2.0, 30.5], [0.25, 0.5, 7.0], [-4.0, 1.5, 12.0]])
    cloud = landmarks_to_cloud(ids, pts, Header(frame_id='x'))
    got_ids, got_pts = cloud_to_landmarks(cloud)
    assert np.array_equal(got_ids, ids) and np.array_equal(got_pts, pts)
    assert cloud_to_landmarks(landmarks_to_cloud(ids[:0], pts[:0], Header()))[0].shape == (0,)
    with pytest.raises(MessageError, match='backend/landmarks'):
        cloud_to_landmarks(observations_to_cloud(_obs(), Header()))


def test_cloud_of_the_layout_before_noise_still_reads():
    """A ``features/matches`` recording from before the ``noise`` field (20 bytes a point)
    reads with noise 1; any other layout is still a MessageError."""
    from hndesc_ros.ros.conversions import LEGACY_MATCH_DTYPE
    obs = _obs()
    arr = np.zeros(len(obs), LEGACY_MATCH_DTYPE)
    arr['track_id'], arr['u'], arr['v'] = obs.track_ids, obs.uv[:, 0], obs.uv[:, 1]
    arr['u_right'], arr['score'] = obs.u_right, obs.scores
    cloud = PointCloud2(height=1, width=len(arr), point_step=20, row_step=20 * len(arr),
                        data=arr.tobytes(), is_dense=True)
    cloud.fields = [PointField(name=n, offset=o, datatype=d, count=1)
                    for n, o, d in MATCH_FIELDS[:-1]]
    back = cloud_to_observations(cloud)
    assert np.array_equal(back.track_ids, obs.track_ids) and (back.noise == 1).all()
    assert np.array_equal(back.u_right, obs.u_right, equal_nan=True)
    cloud.fields[2].name = 'w'
    with pytest.raises(MessageError, match='field layout'):
        cloud_to_observations(cloud)
