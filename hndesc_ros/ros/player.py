"""Publish a ROS 2 bag over DDS with its original timing and /clock (like
``ros2 bag play --clock``), for machines without rosbag2. Messages go out as the bag's raw CDR
bytes, so no conversion can alter them."""
from __future__ import annotations

import importlib
import time
from typing import Optional

from hndesc_ros.datasets.bags import read_bag
from hndesc_ros.ros.common import ros_node, topic_qos


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    pkg, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{pkg}.msg'), name)


def play(bag: str, rate: float = 1.0, loop: bool = False, wait: float = 0.0,
         topics: Optional[set] = None, depth: int = 1000) -> int:
    """Replay ``bag``; returns the number of messages published."""
    if rate <= 0:
        from hndesc_ros.errors import HndescError
        raise HndescError('--rate must be > 0')
    qos = topic_qos(True, depth)
    pubs = {}
    sent = 0
    with ros_node('hndesc_player') as node:
        msgs = list(read_bag(bag, topics))
        for topic, msgtype, _, _ in msgs:
            if topic not in pubs:
                pubs[topic] = node.create_publisher(message_class(msgtype), topic, qos)
        if wait > 0:  # give DDS discovery time to match the subscribers of the image topics
            deadline = time.monotonic() + wait
            images = [p for t, p in pubs.items() if 'image' in t]
            while time.monotonic() < deadline and not all(
                    p.get_subscription_count() > 0 for p in images):
                time.sleep(0.05)
            time.sleep(0.5)
        while True:
            t0_bag, t0 = msgs[0][2], time.monotonic()
            for topic, _, ns, raw in msgs:
                delay = (ns - t0_bag) / 1e9 / rate - (time.monotonic() - t0)
                if delay > 0:
                    time.sleep(delay)
                pubs[topic].publish(raw)
                sent += 1
            if not loop:
                break
        time.sleep(0.5)  # let reliable writers flush
    return sent
