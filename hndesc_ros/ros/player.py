"""Publish a ROS 2 bag over DDS with its original timing and /clock (like
``ros2 bag play --clock``), for machines without rosbag2. Messages go out as the bag's raw CDR
bytes, so no conversion can alter them; they are read one at a time (a long bag of images never
sits in memory)."""
from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Optional

from hndesc_ros.datasets.bags import bag_info, bag_topics, read_bag
from hndesc_ros.errors import HndescError
from hndesc_ros.progress import progress_bar
from hndesc_ros.ros.common import ros_node, topic_qos


def message_class(msgtype: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    pkg, _, name = msgtype.split('/')
    return getattr(importlib.import_module(f'{pkg}.msg'), name)


def play(bag: str, rate: float = 1.0, loop: bool = False, wait: float = 0.0,
         topics: Optional[set] = None, depth: int = 1000, progress: bool = False) -> int:
    """Replay ``bag``; returns the number of messages published. SIGINT / SIGTERM stop it
    between two messages. ``progress``: a bar on stderr (one pass of the bag).

    Raises:
        HndescError: bad rate, missing bag, or a bag that cannot be read to its end (the
            messages before the damage are published first; the message says how many).
    """
    if rate <= 0:
        raise HndescError('--rate must be > 0')
    qos = topic_qos(True, depth)
    sent = 0
    with ros_node('hndesc_player') as (node, stop):
        pubs = {topic: node.create_publisher(message_class(msgtype), topic, qos)
                for topic, msgtype in bag_topics(bag, topics).items()}
        if wait > 0:  # give DDS discovery time to match the subscribers
            deadline = time.monotonic() + wait

            def matched() -> bool:
                """Every image topic has a subscriber, and every topic's publisher is matched
                with all the subscribers the graph knows of (a volatile reliable message
                reaches only matched ones: a late back end would miss the camera_info)."""
                return (all(p.get_subscription_count() > 0
                            for t, p in pubs.items() if 'image' in t)
                        and all(p.get_subscription_count() >= node.count_subscribers(t)
                                for t, p in pubs.items()))

            while time.monotonic() < deadline and not stop.is_set() and not matched():
                time.sleep(0.05)
            stop.wait(0.5)
        total = bag_info(bag)['messages'] if progress else 0
        bar = progress_bar(total, f'play {Path(bag).name}', 'msg', enabled=progress)
        try:
            while not stop.is_set():
                t0_bag = t0 = None
                bar.reset()
                for topic, _, ns, raw in read_bag(bag, topics):
                    if t0 is None:
                        t0_bag, t0 = ns, time.monotonic()
                    delay = (ns - t0_bag) / 1e9 / rate - (time.monotonic() - t0)
                    if (delay > 0 and stop.wait(delay)) or stop.is_set():
                        break
                    pubs[topic].publish(raw)
                    sent += 1
                    bar.update()
                if not loop:
                    break
        finally:
            bar.close()
            stop.wait(0.5)  # let reliable writers flush what was published
    return sent
