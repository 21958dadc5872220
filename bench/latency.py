#!/usr/bin/env python3
"""Latency of the ROS 2 graph over real DDS: image stamp -> odometry publish, and the highest
replay rate at which no frame is dropped (live-camera QoS: SensorDataQoS, best effort).

    python bench/latency.py [--extractor residual] [--frames 30] [--rates 10 5 2 1]

The two nodes run in their own processes (``hndesc-vo run``); this script publishes real KITTI
06 stereo frames stamped with the wall clock at each rate and listens to ``odom``.
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
SEQ = ROOT.parent / 'shared' / 'data' / 'kitti' / 'sequences' / '06'


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--extractor', default='residual')
    p.add_argument('--frames', type=int, default=30)
    p.add_argument('--rates', type=float, nargs='+', default=[10, 5, 2, 1])
    p.add_argument('--reliable', action='store_true',
                   help='reliable QoS (bag replay) instead of SensorDataQoS (live camera)')
    a = p.parse_args()
    os.environ['ROS_DOMAIN_ID'] = str(random.randint(1, 200))
    import rclpy
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import CameraInfo, Image

    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.ros.common import topic_qos
    from hndesc_ros.ros.conversions import numpy_to_image, stamp_to_ns

    seq = KittiSequence(SEQ, count=a.frames)
    frames = [seq.frame(k) for k in range(len(seq))]
    c = seq.calib
    data = yaml.safe_load((ROOT / 'config' / 'vo.yaml').read_text())
    for node in data.values():
        node['ros__parameters']['ros']['reliable'] = a.reliable
    data['frontend_node']['ros__parameters']['features']['extractor'] = a.extractor
    params = Path('/tmp/hndesc_latency_params.yaml')
    params.write_text(yaml.safe_dump(data))
    rows = []
    for rate in a.rates:
        nodes = subprocess.Popen([sys.executable, '-m', 'hndesc_ros.cli', 'run', '--params',
                                  str(params)], stdout=subprocess.DEVNULL)
        rclpy.init()
        node = rclpy.create_node('latency_bench')
        qos = topic_qos(a.reliable, 100)
        pubs = {s: node.create_publisher(Image, f'{s}/image_rect', qos) for s in ('left', 'right')}
        infos = {s: node.create_publisher(CameraInfo, f'{s}/camera_info', qos)
                 for s in ('left', 'right')}
        lat = []
        node.create_subscription(Odometry, 'odom', lambda m: lat.append(
            time.time() - stamp_to_ns(m.header.stamp) * 1e-9), 100)
        deadline = time.time() + 60
        while time.time() < deadline and pubs['left'].get_subscription_count() < 1:
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(3.0)  # let both nodes finish loading models
        for s, tx in (('left', 0.0), ('right', -c.fx * c.baseline)):
            for _ in range(3):
                info = CameraInfo(width=c.width, height=c.height, d=[0.0] * 5,
                                  r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0],
                                  p=[c.fx, 0.0, c.cx, tx, 0.0, c.fy, c.cy, 0.0, 0, 0, 1.0, 0])
                infos[s].publish(info)
                rclpy.spin_once(node, timeout_sec=0.1)
        t0 = time.time()
        for k, fr in enumerate(frames):
            while time.time() < t0 + k / rate:
                rclpy.spin_once(node, timeout_sec=0.005)
            ns = time.time_ns()
            for side, img in (('left', fr.left), ('right', fr.right)):
                msg = numpy_to_image(img)
                msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 10**9, ns % 10**9
                pubs[side].publish(msg)
        end = time.time() + 30
        while time.time() < end and len(lat) < len(frames):
            rclpy.spin_once(node, timeout_sec=0.1)
        node.destroy_node()
        rclpy.shutdown()
        nodes.send_signal(2)
        nodes.wait(timeout=20)
        ms = sorted(1e3 * v for v in lat)
        med = statistics.median(ms) if ms else float('nan')
        p95 = ms[int(0.95 * (len(ms) - 1))] if ms else float('nan')
        rows.append((rate, len(lat), med, p95))
        print(f'{rate:5.1f} Hz: {len(lat)}/{len(frames)} frames reached odometry, latency '
              f'median {med:.0f} ms, p95 {p95:.0f} ms', flush=True)
    ok = [r for r, n, _, _ in rows if n == len(frames)]
    print(f'\nextractor {a.extractor}: highest rate without a dropped frame: '
          f'{max(ok) if ok else "none of the rates tried"} Hz')


if __name__ == '__main__':
    main()
