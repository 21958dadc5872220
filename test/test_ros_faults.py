"""Bad inputs to the nodes (real rclpy, in-process): each is dropped and counted, and the node
keeps processing good frames afterwards."""
import os
import random
import time

import numpy as np
import pytest

import rclpy  # noqa: E402  (ros-rclpy from requirements.txt)
from nav_msgs.msg import Path  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402

from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.ros.conversions import camera_info_from_calib, numpy_to_image  # noqa: E402


@pytest.fixture(scope='module')
def ros():
    os.environ['ROS_DOMAIN_ID'] = str(random.randint(1, 200))
    rclpy.init()
    yield
    rclpy.shutdown()


def image_msg(img, ns, encoding=None):
    msg = numpy_to_image(img)
    if encoding:
        msg.encoding = encoding
    msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 10**9, ns % 10**9
    return msg


def info_msg(seq, side='left', zeros=False):
    msg = camera_info_from_calib(seq.calib, side)
    if zeros:
        msg.p, msg.r = [0.0] * 12, [0.0] * 9
    return msg


class Harness:
    def __init__(self, node):
        self.node = node
        self.io = rclpy.create_node(f'fault_io_{random.randint(0, 10**6)}')
        self.ex = SingleThreadedExecutor()
        self.ex.add_node(node)
        self.ex.add_node(self.io)

    def spin(self, cond, timeout=30.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end and not cond():
            self.ex.spin_once(timeout_sec=0.05)
        return cond()

    def close(self):
        self.ex.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


def frontend_under_test(*params):
    """A FrontendNode (RootSIFT, reliable inputs, ``params`` on top) in a Harness, with
    publishers of images and camera_info and the received ``features/matches``."""
    from hndesc_ros.ros.common import topic_qos
    from hndesc_ros.ros.frontend_node import FrontendNode
    node = FrontendNode(parameter_overrides=[
        Parameter('features.extractor', value='rootsift'), Parameter('ros.reliable', value=True),
        *params])
    h = Harness(node)
    qos = topic_qos(True, 100)
    pub = {s: h.io.create_publisher(Image, f'{s}/image_rect', qos) for s in ('left', 'right')}
    info = {s: h.io.create_publisher(CameraInfo, f'{s}/camera_info', qos)
            for s in ('left', 'right')}
    got = []
    h.io.create_subscription(PointCloud2, 'features/matches', got.append, qos)
    return node, h, pub, info, got


def test_frontend_survives_and_counts_bad_images(ros, kitti06):
    node, h, pub, info, got = frontend_under_test(
        Parameter('features.max_keypoints', value=500),
        Parameter('ros.drop_stale', value=False))  # every pair in order: exact counts
    seq = KittiSequence(kitti06, count=3)
    frames = [seq.frame(k) for k in range(3)]
    try:
        assert h.spin(lambda: pub['left'].get_subscription_count() > 0, 10)
        assert h.spin(lambda: info['right'].get_subscription_count() > 0, 10)
        # the tracker needs the camera model: the first pair waits for it
        pub['left'].publish(image_msg(frames[0].left, 5 * 10**8))
        pub['right'].publish(image_msg(frames[0].right, 5 * 10**8))
        assert not h.spin(lambda: len(got) == 1, 1.0)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        assert h.spin(lambda: len(got) == 1)
        got.clear()

        def send(k, ns, left=None, right=None, enc=None):
            pub['left'].publish(image_msg(frames[k].left if left is None else left, ns, enc))
            if right is not False:
                pub['right'].publish(image_msg(frames[k].right if right is None else right, ns,
                                               enc))

        send(0, 10**9)
        assert h.spin(lambda: len(got) == 1)
        send(1, 2 * 10**9)                       # duplicate-free good frame
        assert h.spin(lambda: len(got) == 2)
        send(2, 2 * 10**9)                       # duplicate stamp
        send(0, 15 * 10**8)                      # stamp going backwards
        send(1, 3 * 10**9, right=False)          # right image missing ...
        send(2, 4 * 10**9)                       # ... detected when the next pair completes
        assert h.spin(lambda: len(got) == 3)
        rgba = np.dstack([frames[0].left] * 4)
        send(0, 5 * 10**9, left=rgba, right=rgba, enc='rgba8')
        wide = np.zeros((frames[0].left.shape[0], frames[0].left.shape[1], 2), np.uint8)
        send(0, 6 * 10**9, left=wide, right=wide, enc='mono16')
        send(0, 7 * 10**9, left=frames[0].left, right=frames[0].right[:-3])   # sizes differ
        odd = frames[1].left[:367, :1221]                                      # odd size: fine
        send(1, 8 * 10**9, left=odd, right=frames[1].right[:367, :1221])
        assert h.spin(lambda: len(got) == 4)
        counts = node.drops.counts
        assert counts['duplicate_stamp'] == 1
        assert counts['stamp_backwards'] == 1
        assert counts['unpaired_image'] == 1
        assert counts['bad_encoding'] == 2       # rgba8, mono16
        assert counts['stereo_size_mismatch'] == 1
        assert node.frames == 5                  # the waiting pair and four good ones
    finally:
        h.close()


def test_frontend_latest_pair_wins_while_one_is_processed(ros, kitti06):
    """Live mode (``ros.drop_stale``, the default): pairs sent faster than the front end works
    replace the waiting one; every pair is either processed or counted as stale, and the newest
    one is always processed."""
    from hndesc_ros.ros.conversions import stamp_to_ns
    node, h, pub, info, got = frontend_under_test()
    seq = KittiSequence(kitti06, count=8)
    try:
        assert h.spin(lambda: pub['left'].get_subscription_count() > 0, 10)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        h.spin(lambda: node.frontend is not None, 10)
        stamps = [(k + 1) * 10**8 for k in range(8)]
        for k, ns in enumerate(stamps):                  # 8 pairs at once
            fr = seq.frame(k)
            pub['left'].publish(image_msg(fr.left, ns))
            pub['right'].publish(image_msg(fr.right, ns))
        done = lambda: node.frames + node.worker.stale == 8  # noqa: E731
        assert h.spin(done, 60), (node.frames, node.worker.stale)
        assert h.spin(lambda: len(got) == node.frames, 10)
        assert node.worker.stale > 0 and not node.drops.counts
        assert stamp_to_ns(got[-1].header.stamp) == stamps[-1]   # the newest one is processed
    finally:
        h.close()  # FrontendNode.destroy_node stops the worker thread


def test_backend_survives_bad_camera_info_and_layout(ros, kitti06):
    from hndesc_ros.ros.backend_node import BackendNode
    from hndesc_ros.ros.common import topic_qos
    from hndesc_ros.ros.conversions import MATCH_FIELDS
    node = BackendNode(parameter_overrides=[Parameter('ros.reliable', value=True)])
    h = Harness(node)
    qos = topic_qos(True, 100)
    seq = KittiSequence(kitti06, count=1)
    info = {s: h.io.create_publisher(CameraInfo, f'{s}/camera_info', qos)
            for s in ('left', 'right')}
    matches = h.io.create_publisher(PointCloud2, 'features/matches', qos)
    paths = []  # nav_msgs/Path is sent only while someone subscribes
    h.io.create_subscription(Path, 'path', paths.append, 10)
    try:
        assert h.spin(lambda: matches.get_subscription_count() > 0, 10)
        cloud = PointCloud2(height=1, width=1, point_step=24, row_step=24, data=bytes(24))
        cloud.fields = [PointField(name=n, offset=o, datatype=d, count=1)
                        for n, o, d in MATCH_FIELDS]
        matches.publish(cloud)                                   # before any calibration:
        assert h.spin(lambda: len(node.waiting) == 1)            # held, not dropped
        info['left'].publish(info_msg(seq, zeros=True))          # camera_info with zeros
        assert h.spin(lambda: node.drops.counts['bad_camera_info'] == 1)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        assert h.spin(lambda: node.odometry is not None)
        assert h.spin(lambda: node.frames == 1)                  # the held one, processed
        assert not node.waiting and 'no_calibration' not in node.drops.counts
        bad = PointCloud2(height=1, width=1, point_step=12, row_step=12, data=bytes(12))
        bad.fields = [PointField(name=n, offset=4 * i, datatype=7, count=1)
                      for i, n in enumerate('xyz')]
        matches.publish(bad)                                     # unknown field layout
        assert h.spin(lambda: node.drops.counts['bad_layout'] == 1)
        cloud.header.stamp.sec = 1
        matches.publish(cloud)                                   # a valid (tiny) message
        assert h.spin(lambda: node.frames == 2)
        assert h.spin(lambda: paths and len(paths[-1].poses) == 2)  # one pose per frame
    finally:
        h.close()


def test_late_backend_in_exact_replay_gets_the_earlier_matches(ros, kitti06):
    """Exact replay (``ros.drop_stale: false``): a back end that joins after the front end has
    sent its first matches (DDS discovery under load; seen in a fresh clone: 27 of 51 poses)
    still receives them, from the front end's transient-local history."""
    from hndesc_ros.ros.backend_node import BackendNode
    exact = [Parameter('ros.drop_stale', value=False), Parameter('vo.share_map', value=False)]
    node, h, pub, info, got = frontend_under_test(*exact)
    seq = KittiSequence(kitti06, count=4)
    back = None
    try:
        assert h.spin(lambda: pub['left'].get_subscription_count() > 0, 10)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        assert h.spin(lambda: node.frontend is not None, 10)
        for k in range(4):
            fr = seq.frame(k)
            pub['left'].publish(image_msg(fr.left, (k + 1) * 10**8))
            pub['right'].publish(image_msg(fr.right, (k + 1) * 10**8))
        assert h.spin(lambda: len(got) == 4, 60)              # all sent before the back end
        back = BackendNode(parameter_overrides=[Parameter('ros.reliable', value=True), *exact])
        h.ex.add_node(back)
        assert h.spin(lambda: info['right'].get_subscription_count() > 1, 10)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        assert h.spin(lambda: back.frames == 4, 30), back.drops.counts
    finally:
        h.close()
        if back is not None:
            back.destroy_node()


def test_frontend_takes_the_back_ends_disparity_offset(ros, kitti06):
    """``backend/disparity_offset`` reaches the front end's local map before its next pair;
    NaN and values beyond 3 px (not an offset) are ignored, the latest good one stays."""
    from std_msgs.msg import Float32
    from hndesc_ros.ros.common import topic_qos
    node, h, pub, info, got = frontend_under_test(Parameter('features.max_keypoints', value=300),
                                                  Parameter('ros.drop_stale', value=False))
    seq = KittiSequence(kitti06, count=3)
    offset = h.io.create_publisher(Float32, 'backend/disparity_offset', topic_qos(True, 10))
    try:
        assert h.spin(lambda: info['right'].get_subscription_count() > 0, 10)
        assert h.spin(lambda: offset.get_subscription_count() > 0, 10)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        for k, value in enumerate([0.4, float('nan'), 9.0]):
            offset.publish(Float32(data=value))
            h.spin(lambda: False, 0.2)
            frame = seq.frame(k)
            pub['left'].publish(image_msg(frame.left, (k + 1) * 10**9))
            pub['right'].publish(image_msg(frame.right, (k + 1) * 10**9))
            assert h.spin(lambda: len(got) == k + 1)
            assert abs(node.frontend.tracker.disparity_offset - 0.4) < 1e-6, value
    finally:
        h.close()


def test_frontend_status_reports_a_camera_in_low_light(ros, kitti06):
    """``frontend/status`` counts the pairs whose light the front end changed: a darkened
    real pair (the ``dark`` variant: gain 0.18, gamma 1.6, noise) is stretched and blurred
    against its noise, a well exposed one neither."""
    import json
    from std_msgs.msg import String
    from hndesc_ros.datasets.variants import change_light, light_params
    node, h, pub, info, got = frontend_under_test(Parameter('features.max_keypoints', value=300),
                                                  Parameter('ros.drop_stale', value=False))
    seq = KittiSequence(kitti06, count=2)
    status = []
    h.io.create_subscription(String, 'frontend/status',
                             lambda m: status.append(json.loads(m.data)), 10)
    rng = np.random.default_rng(0)
    dark = light_params('dark', 1, rng)
    try:
        assert h.spin(lambda: info['right'].get_subscription_count() > 0, 10)
        info['left'].publish(info_msg(seq))
        info['right'].publish(info_msg(seq, 'right'))
        for k in range(2):
            frame = seq.frame(k)
            left, right = frame.left, frame.right
            if k == 1:
                left, right = (change_light(im, dark, rng) for im in (left, right))
            pub['left'].publish(image_msg(left, (k + 1) * 10**9))
            pub['right'].publish(image_msg(right, (k + 1) * 10**9))
            assert h.spin(lambda: len(got) == k + 1)
        assert h.spin(lambda: status and status[-1]['frames'] == 2, 10)
    finally:
        h.close()
    assert status[-1]['pairs_stretched'] == 1 and status[-1]['pairs_blurred'] == 1, status[-1]
