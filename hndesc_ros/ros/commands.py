"""``hndesc-vo`` subcommands of the ROS layer; rclpy and messages are imported only when run."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from hndesc_ros.config import BAG_STORAGES, EXACT_REPLAY, TRAJECTORY_FORMATS


def default_params() -> Path:
    """config/vo.yaml of the source tree, or of the installed share/ folder."""
    from hndesc_ros.config import package_file
    return package_file('config', 'vo.yaml')


def cmd_kitti2bag(args) -> int:
    from hndesc_ros.datasets.bags import bag_info, gt_tum_path, sequence_to_bag
    from hndesc_ros.datasets.kitti import KittiSequence
    seq = KittiSequence(args.sequence, args.first, args.count, color=args.color)
    out = sequence_to_bag(seq, args.out, args.storage, progress=True)
    info = bag_info(out)
    print(f'wrote {out} ({args.storage}): {len(seq)} frames, {info["messages"]} messages, '
          f'{info["duration_s"]:.1f} s')
    if seq.gt_relative() is not None:
        print(f'ground truth with the bag\'s stamps (for eval-traj --format tum): '
              f'{gt_tum_path(out)}')
    for topic, (mt, n) in info['topics'].items():
        print(f'  {topic:<22} {mt:<30} {n}')
    return 0


def cmd_play(args) -> int:
    from hndesc_ros.ros.player import play
    n = play(args.bag, args.rate, args.loop, args.wait, progress=True)
    print(f'published {n} messages from {args.bag}')
    return 0


def cmd_record_odom(args) -> int:
    from hndesc_ros.ros.recorder import record_odometry
    b2c = None
    if args.camera_frame:
        from hndesc_ros.config import load_config
        b2c = load_config(args.params or default_params(), node='backend_node').ros.base_to_camera
    n = record_odometry(args.topic, args.out, args.format, args.count, args.idle, args.timeout,
                        b2c)
    print(f'recorded {n} odometry messages -> {args.out}')
    return 0 if n else 1


def node_command(name: str, params: Path, extra=()) -> list:
    """The command line of one node process."""
    return [sys.executable, '-m', f'hndesc_ros.ros.{name}', '--ros-args', '--params-file',
            str(params), *extra]


def cmd_run(args) -> int:
    """Both nodes as child processes; SIGINT or SIGTERM (also as a background job, where SIGINT
    arrives only if a handler is installed) stops both within 2 s, exit code 0."""
    from hndesc_ros.config import load_config
    from hndesc_ros.ros.common import stop_on_signals
    params = Path(args.params) if args.params else default_params()
    load_config(params)  # validate before starting anything
    stop = stop_on_signals()
    extra = []
    for key, value in (EXACT_REPLAY.items() if args.exact else ()):
        extra += ['-p', f'{key}:={str(value).lower()}']
    for remap in args.remap or []:
        extra += ['-r', remap]
    procs = [subprocess.Popen(node_command(n, params, extra))
             for n in ('frontend_node', 'backend_node')]
    print(f'started frontend_node (pid {procs[0].pid}) and backend_node (pid {procs[1].pid}) '
          f'with {params}; Ctrl-C stops both', flush=True)
    while not stop.is_set() and all(p.poll() is None for p in procs):
        stop.wait(0.2)
    for p in procs:  # the nodes stop after their current callback (ros/common.py)
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 1.9  # the nodes bound their own teardown at 1.5 s
    for p in procs:
        try:
            p.wait(timeout=max(deadline - time.monotonic(), 0.05))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    bad = [p.returncode for p in procs if p.returncode != 0]
    if stop.is_set() or not bad:
        return 0
    return 2 if 2 in bad else 1  # 2: a node refused its configuration (it said why)


def add_commands(sub) -> None:
    """Register the ROS subcommands (kitti2bag, play, run, record-odom) on ``sub``."""
    s = sub.add_parser('kitti2bag', help='KITTI odometry sequence -> ROS 2 bag')
    s.add_argument('--sequence', required=True)
    s.add_argument('--out', required=True, help='bag folder')
    s.add_argument('--first', type=int, default=0)
    s.add_argument('--count', type=int)
    s.add_argument('--color', action='store_true', help='image_2/3 as bgr8')
    s.add_argument('--storage', choices=BAG_STORAGES, default='mcap')
    s.set_defaults(func=cmd_kitti2bag)

    s = sub.add_parser('play', help='publish a bag over DDS with its timing and /clock')
    s.add_argument('bag')
    s.add_argument('--rate', type=float, default=1.0)
    s.add_argument('--loop', action='store_true')
    s.add_argument('--wait', type=float, default=0.0,
                   help='before playing, wait up to this many seconds for image subscribers '
                   'and until every subscriber the graph knows of is matched')
    s.set_defaults(func=cmd_play)

    s = sub.add_parser('run', help='start the front-end and back-end nodes (no ros2 CLI needed)')
    s.add_argument('--params', help='ROS params YAML (default config/vo.yaml)')
    s.add_argument('--remap', action='append', help='from:=to, passed to both nodes')
    s.add_argument('--exact', action='store_true',
                   help='repeatable bag replay: reliable QoS, every stereo pair in order, no '
                   'landmark feedback (default: SensorDataQoS, the latest pair wins while one '
                   'is processed)')
    s.set_defaults(func=cmd_run)

    s = sub.add_parser('record-odom', help='write received odometry as a trajectory file')
    s.add_argument('topic')
    s.add_argument('out')
    s.add_argument('--format', choices=TRAJECTORY_FORMATS, default='tum')
    s.add_argument('--count', type=int, default=0, help='stop after N messages')
    s.add_argument('--idle', type=float, default=0.0, help='stop after N s without messages')
    s.add_argument('--timeout', type=float, default=0.0, help='stop after N s')
    s.add_argument('--camera-frame', action='store_true',
                   help='convert base_link poses back to the camera frame (KITTI GT frame)')
    s.add_argument('--params', help='params YAML holding ros.base_to_camera')
    s.set_defaults(func=cmd_record_odom)
