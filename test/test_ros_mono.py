"""The monocular graph in-process (real rclpy): the front-end and back-end nodes with
``vo.mono`` on KITTI 00 frames give the poses of the offline mono run (no GT scale: the back
end's bundle adjustment carries the first step's scale), frame for frame."""
import numpy as np
from nav_msgs.msg import Odometry
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image

from conftest import shared_path
from hndesc_ros.config import load_config
from hndesc_ros.datasets.kitti import KittiSequence
from hndesc_ros.runner import run_sequence
from test_ros_faults import Harness, image_msg, info_msg, ros  # noqa: F401 (fixture)

FRAMES = 25


def test_mono_nodes_give_the_offline_mono_poses(ros):  # noqa: F811
    from hndesc_ros.ros.backend_node import BackendNode
    from hndesc_ros.ros.common import topic_qos
    from hndesc_ros.ros.frontend_node import FrontendNode
    seq = KittiSequence(shared_path('kitti', 'sequences', '00'), count=FRAMES, mono=True)
    params = [Parameter('vo.mono', value=True), Parameter('ros.reliable', value=True),
              Parameter('ros.drop_stale', value=False)]
    front = FrontendNode(parameter_overrides=params)
    back = BackendNode(parameter_overrides=params)
    h = Harness(front)
    h.ex.add_node(back)
    qos = topic_qos(True, 100)
    image = h.io.create_publisher(Image, 'image', qos)
    info = h.io.create_publisher(CameraInfo, 'camera_info', qos)
    odom = []
    h.io.create_subscription(Odometry, 'odom', odom.append, qos)
    try:
        assert h.spin(lambda: image.get_subscription_count() > 0, 10)
        assert h.spin(lambda: info.get_subscription_count() > 1, 10)
        info.publish(info_msg(seq))
        poses = []
        for k in range(FRAMES):  # one at a time: the back end's pose after each frame
            image.publish(image_msg(seq.frame(k).left, (k + 1) * 10**8))
            assert h.spin(lambda: back.frames == k + 1, 60), (k, back.drops.counts)
            poses.append(back.odometry.T.copy())
        assert h.spin(lambda: len(odom) == FRAMES, 10)
    finally:
        h.close()
        back.destroy_node()
    offline = run_sequence(seq, load_config(None, {'vo.mono': True}), mono=True)['poses']
    assert back.odometry.smoother is not None and back.odometry.resets == 0
    assert np.linalg.norm(offline[-1, :3, 3]) > 10  # 24 steps of about one unit
    assert np.allclose(np.array(poses), offline, atol=1e-6)
