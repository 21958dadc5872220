#!/usr/bin/env python3
"""Soak: real KITTI 06 stereo frames through both nodes (their own processes, real DDS) with
faults injected at random but reproducibly (``--seed``), compared with the same run clean.

The shared data holds 51 stereo frames of KITTI 06, so they are replayed back and forth
(0..50, 49..0, 1..50, ...: the car drives the road forward and in reverse, a continuous motion
with known ground truth) with stamps increasing by 0.1 s, for as many frames as asked.

    python bench/soak.py                      # 1,100 frames, faults on, then the clean run
    python bench/soak.py --frames 60 --no-clean --extractor rootsift   # the test's version

Faults (each counted by the node under the reason in brackets, compared with what was
injected): a left or a right image dropped (``unpaired_image``), a pair sent twice
(``duplicate_stamp``), two pairs swapped (the older one: ``stamp_backwards``), a wrong encoding
(``bad_encoding``), a truncated image buffer (``bad_image_size``), left and right of different
sizes (``stereo_size_mismatch``), a zero or NaN camera_info (``bad_camera_info``, in both
nodes). Events without a counter: camera_info missing for the first frames (the pairs wait and
are processed once it comes), a burst of 20 pairs at 5x the rate, a 3 s gap. Separately: a
corrupt weights file at start-up (the node must refuse with one line, exit 2) and a truncated
bag (``hndesc-vo play`` must publish what it can read, say where it stopped, exit 2).

Between faults the driver waits until the front end has consumed each pair (its
``frontend/status``) so that every count is exact; frames go out at most at ``--rate``.
Reported: nodes alive at the end, injected vs counted per reason, resident memory of each node
every 100 frames, tracking losses and recoveries (``backend/status``), ATE of both runs.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Optional

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SEQ = ROOT.parent / 'shared' / 'data' / 'kitti' / 'sequences' / '06'
FAULTS = {  # fault -> (front-end reason, back-end reason or None)
    'drop_left': ('unpaired_image', None),
    'drop_right': ('unpaired_image', None),
    'duplicate': ('duplicate_stamp', None),
    'out_of_order': ('stamp_backwards', None),
    'bad_encoding': ('bad_encoding', None),
    'truncated_image': ('bad_image_size', None),
    'size_mismatch': ('stereo_size_mismatch', None),
    'zero_camera_info': ('bad_camera_info', 'bad_camera_info'),
    'nan_camera_info': ('bad_camera_info', 'bad_camera_info'),
}
MISSING_INFO_FRAMES = 5
BURST = 20


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) / 1024
    return float('nan')


def loads_torch(pid: int) -> bool:
    """Whether the process has torch's library mapped."""
    return 'libtorch' in Path(f'/proc/{pid}/maps').read_text()


def fault_plan(n: int, seed: int, rate: float) -> dict:
    """{frame index: fault} for ``n`` frames; a fault on ~``rate`` of the frames, never on the
    first frames (camera_info is missing there), the burst or the frame after a fault."""
    rng = random.Random(seed)
    kinds = sorted(FAULTS)
    plan, k = {}, MISSING_INFO_FRAMES + 2
    quiet = set(range(n // 2 - 1, n // 2 + BURST + 2)) | {n // 4 - 1, n // 4}  # burst, gap
    while k < n - 2:
        if k not in quiet and rng.random() < rate:
            plan[k] = kinds[len(plan) % len(kinds)] if len(plan) < len(kinds) else \
                rng.choice(kinds)  # every kind at least once, then at random
            k += 2  # the next pair is clean: it completes (and exposes) the faulty one
        else:
            k += 1
    return plan


def pingpong(j: int, n: int) -> int:
    """Frame index of the ``j``-th frame sent when ``n`` frames are replayed back and forth."""
    period = 2 * (n - 1)
    r = j % period
    return r if r < n else period - r


def stamp_ns(j: int) -> int:
    """Stamp of the ``j``-th frame sent: 1 s + j / 10 Hz."""
    return 1_000_000_000 + j * 100_000_000


class Driver:
    """The camera side (of the soak and of bench/latency.py): publishes pairs and camera_info
    (reliable, or SensorDataQoS like a live driver), listens to the nodes' status and odometry
    (pose and wall time of arrival by image stamp)."""

    def __init__(self, seq, rate: float, reliable: bool = True) -> None:
        import rclpy
        from nav_msgs.msg import Odometry
        from sensor_msgs.msg import CameraInfo, Image
        from std_msgs.msg import String

        from hndesc_ros.ros.common import topic_qos
        self.rclpy, self.seq, self.period = rclpy, seq, 1 / rate
        rclpy.init()
        self.node = rclpy.create_node('camera_driver')
        qos = topic_qos(reliable, 100)
        self.img = {s: self.node.create_publisher(Image, f'{s}/image_rect', qos)
                    for s in ('left', 'right')}
        self.info = {s: self.node.create_publisher(CameraInfo, f'{s}/camera_info', qos)
                     for s in ('left', 'right')}
        self.status = {'frontend': {}, 'backend': {}}
        for who in self.status:
            self.node.create_subscription(String, f'{who}/status',
                                          lambda m, w=who: self._on_status(w, m), 100)
        self.odom, self.received = {}, {}
        self.node.create_subscription(Odometry, 'odom', self._on_odom, topic_qos(True, 100))
        self.last_pub = 0.0
        self.frames = {}

    def frame(self, k: int):
        if k not in self.frames:
            self.frames[k] = self.seq.frame(k)
        return self.frames[k]

    def _on_status(self, who: str, msg) -> None:
        self.status[who] = json.loads(msg.data)

    def _on_odom(self, msg) -> None:
        from hndesc_ros.ros.conversions import pose_to_matrix, stamp_to_ns
        ns = stamp_to_ns(msg.header.stamp)
        self.odom[ns], self.received[ns] = pose_to_matrix(msg.pose.pose), time.time()

    def spin(self, cond, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while not cond() and (left := end - time.monotonic()) > 0:
            # wakes on every message; the 50 ms cap re-checks conditions on graph state
            # (subscriber counts). A shorter poll cost this camera 0.1 core at 10 Hz.
            self.rclpy.spin_once(self.node, timeout_sec=min(left, 0.05))
        return cond()

    def consumed(self, who: str = 'frontend') -> int:
        """Inputs the node has finished with: frames processed plus inputs dropped."""
        st = self.status[who]
        return st.get('frames', 0) + sum(st.get('dropped', {}).values())

    def wait_subscribers(self) -> None:
        self.spin(lambda: all(p.get_subscription_count() > 0 for p in self.img.values()), 60)

    def camera_info(self, side: str, bad: str = '') -> None:
        from hndesc_ros.ros.conversions import camera_info_from_calib
        msg = camera_info_from_calib(self.seq.calib, side)
        if bad:
            msg.p = [0.0 if bad == 'zero' else float('nan')] * 12
        self.info[side].publish(msg)

    def pair(self, k: int, drop: str = '', encoding: str = '', truncate: bool = False,
             crop_right: bool = False, pace: bool = True, stamp: Optional[int] = None) -> None:
        """Publish the ``k``-th pair (stamped ``stamp`` ns, default :func:`stamp_ns`), with the
        fault the arguments name."""
        from hndesc_ros.ros.conversions import numpy_to_image
        if pace:
            delay = self.last_pub + self.period - time.monotonic()
            if delay > 0:
                self.spin(lambda: False, delay)
        fr = self.frame(pingpong(k, len(self.seq)))
        ns = stamp_ns(k) if stamp is None else stamp
        for side, img in (('left', fr.left), ('right', fr.right)):
            if side == drop:
                continue
            if side == 'right' and crop_right:
                img = img[:-4]
            msg = numpy_to_image(img)
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 10**9, ns % 10**9
            msg.header.frame_id = f'{side}_camera_optical'
            if side == 'left' and encoding:
                msg.encoding = encoding
            if side == 'left' and truncate:
                msg.data = bytes(msg.data)[:len(msg.data) // 2]
            self.img[side].publish(msg)
        self.last_pub = time.monotonic()

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def start_nodes(params: Path, env: dict = None, logs: Path = None) -> list:
    """Both nodes as processes, as ``hndesc-vo run`` starts them; their output goes to
    ``logs``/NODE.log (a stop that is not clean says why there), or is discarded."""
    from hndesc_ros.ros.commands import node_command
    procs = []
    for n in ('frontend_node', 'backend_node'):
        out = open(logs / f'{n}.log', 'w') if logs else subprocess.DEVNULL
        procs.append(subprocess.Popen(node_command(n, params), env=env, stdout=out,
                                      stderr=subprocess.STDOUT))
        if logs:
            out.close()  # the child holds its own copy
    return procs


def stop_nodes(procs: list) -> list:
    """SIGINT to each node; their exit codes ('killed' after 10 s)."""
    codes = []
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            codes.append(p.wait(timeout=10))
        except subprocess.TimeoutExpired:
            p.kill()
            codes.append('killed')
    return codes


def soak(seq, n: int, params: Path, plan: dict, rate: float, log, logs: Path) -> dict:
    """One run of ``n`` frames through fresh nodes (their output in ``logs``/NODE.log);
    returns the report."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)))
    os.environ['ROS_DOMAIN_ID'] = env['ROS_DOMAIN_ID']
    logs.mkdir(parents=True, exist_ok=True)
    procs = start_nodes(params, env, logs)
    drv = Driver(seq, rate)
    injected_fe, injected_be, events = Counter(), Counter(), []
    rss, expected, stuck, next_sample = [], 0, [], 100
    calibrated = False
    t_start = time.monotonic()
    try:
        drv.wait_subscribers()
        drv.spin(lambda: False, 3.0)  # models load after the subscriptions exist
        k = 0
        while k < n:
            fault = plan.get(k, '')
            if k >= MISSING_INFO_FRAMES or not plan:
                for side in ('left', 'right'):
                    drv.camera_info(side)
                calibrated = True
            elif k == 0:
                events.append(f'camera_info missing for frames 0-{MISSING_INFO_FRAMES - 1}')
            if k == n // 2 and plan:  # burst: BURST pairs at 5x the rate, no waiting
                events.append(f'burst of {BURST} pairs at 5x the rate from frame {k}')
                for j in range(k, min(k + BURST, n)):
                    drv.spin(lambda: False, drv.period / 5)
                    drv.pair(j, pace=False)
                expected += min(BURST, n - k)
                k += BURST
            elif k == n // 4 and plan:
                events.append(f'3 s gap before frame {k}')
                drv.spin(lambda: False, 3.0)
                drv.pair(k)
                expected += 1
                k += 1
            elif fault in ('drop_left', 'drop_right'):
                drv.pair(k, drop=fault.split('_')[1])
                expected += 1  # counted when the next pair completes
                k += 1
            elif fault == 'duplicate':
                drv.pair(k)
                drv.spin(lambda: drv.consumed() >= expected + 1, 30)
                drv.pair(k)
                expected += 2
                k += 1
            elif fault == 'out_of_order':
                drv.pair(k + 1)
                drv.spin(lambda: drv.consumed() >= expected + 1, 30)
                drv.pair(k)
                expected += 2
                k += 2
            elif fault in ('bad_encoding', 'truncated_image', 'size_mismatch'):
                drv.pair(k, encoding='rgba8' if fault == 'bad_encoding' else '',
                         truncate=fault == 'truncated_image',
                         crop_right=fault == 'size_mismatch')
                expected += 1
                k += 1
            elif fault.endswith('camera_info'):
                drv.camera_info('left', bad=fault.split('_')[0])
                expected += 1
                drv.pair(k)
                expected += 1
                k += 1
            else:
                drv.pair(k)
                expected += 1
                k += 1
            if fault:
                injected_fe[FAULTS[fault][0]] += 1
                if FAULTS[fault][1]:
                    injected_be[FAULTS[fault][1]] += 1
            wait_for = expected - (1 if fault in ('drop_left', 'drop_right') else 0)
            if calibrated and not drv.spin(lambda: drv.consumed() >= wait_for, 60):
                stuck.append(k)
            if k >= next_sample or k >= n:
                next_sample += 100
                alive = [p.poll() is None for p in procs]
                rss.append({'frame': k, 'frontend_mb': rss_mb(procs[0].pid) if alive[0] else 0,
                            'backend_mb': rss_mb(procs[1].pid) if alive[1] else 0})
                log(f'frame {k:5d}/{n}: front end {drv.status["frontend"].get("frames", 0)} '
                    f'frames, back end {drv.status["backend"].get("frames", 0)}, RSS '
                    f'{rss[-1]["frontend_mb"]:.0f} / {rss[-1]["backend_mb"]:.0f} MB')
        drv.spin(lambda: drv.status['backend'].get('frames', 0)
                 >= drv.status['frontend'].get('frames', 0), 60)
        drv.spin(lambda: len(drv.odom) >= drv.status['backend'].get('frames', 0), 10)
        # the nodes' last counts may arrive after their last frame (a status message that
        # reports the final fault comes later): wait a little for them, never for ever
        drv.spin(lambda: (drv.status['frontend'].get('dropped', {}) == dict(injected_fe)
                          and drv.status['backend'].get('dropped', {}) == dict(injected_be)), 10)
        alive = [p.poll() is None for p in procs]
        torch = [loads_torch(p.pid) for p in procs if p.poll() is None]
    finally:
        drv.close()
        codes = stop_nodes(procs)
    fe, be = drv.status['frontend'], drv.status['backend']
    return {
        'frames_sent': n, 'seconds': round(time.monotonic() - t_start, 1),
        'nodes_alive_at_end': alive, 'exit_codes_on_sigint': codes, 'events': events,
        'frontend_frames': fe.get('frames', 0), 'backend_frames': be.get('frames', 0),
        'odometry_messages': len(drv.odom), 'stuck_at_frames': stuck,
        'injected': {'frontend': dict(injected_fe), 'backend': dict(injected_be)},
        'counted': {'frontend': fe.get('dropped', {}), 'backend': be.get('dropped', {})},
        'tracking_lost': be.get('tracking_lost', 0),
        'frontend_tracking_lost': fe.get('tracking_lost', 0),
        'relocalised': fe.get('relocalised', 0), 'rss': rss, 'torch_loaded': torch,
        'odom': drv.odom,
    }


def trajectory_error(seq, n: int, odom: dict, params: Path) -> dict:
    """ATE (SE(3) aligned) of the received odometry against KITTI ground truth."""
    from hndesc_ros.config import load_config
    from hndesc_ros.eval.trajectory import evaluate
    from hndesc_ros.se3 import base_to_camera, from_xyzq
    T_bc = from_xyzq(load_config(params, node='backend_node').ros.base_to_camera)
    gt = seq.gt_relative()
    index = {stamp_ns(j): pingpong(j, len(seq)) for j in range(n)}
    ks = [index[ns] for ns in sorted(odom) if ns in index]
    est = np.array([base_to_camera(odom[ns], T_bc) for ns in sorted(odom) if ns in index])
    if len(ks) < 3:
        return {'ate_rmse_m': float('nan'), 'poses': len(ks), 'est': est.reshape(-1, 4, 4),
                'gt': gt[ks].reshape(-1, 4, 4)}
    m = evaluate(est, gt[ks])
    return {'ate_rmse_m': m['ate_rmse_m'], 'poses': len(ks), 'est': est, 'gt': gt[ks]}


def refuses_corrupt_weights(tmp: Path, params: Path) -> dict:
    """A corrupt weights file at start-up: the front-end node exits 2 with one line."""
    bad = tmp / 'corrupt_weights.onnx'
    bad.write_bytes(os.urandom(4096))
    data = yaml.safe_load(params.read_text())
    data['frontend_node']['ros__parameters']['features'].update(
        weights=str(bad), extractor='residual-small')  # a network extractor reads weights
    p = tmp / 'params_corrupt.yaml'
    p.write_text(yaml.safe_dump(data))
    from hndesc_ros.ros.commands import node_command
    r = subprocess.run(node_command('frontend_node', p), capture_output=True, text=True,
                       timeout=120)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    return {'exit_code': r.returncode, 'stderr_lines': len(lines),
            'line': lines[-1] if lines else '', 'names_file': bad.name in r.stderr}


def truncated_bag_play(tmp: Path, seq_dir: Path) -> dict:
    """``hndesc-vo play`` of a truncated bag: publishes what it reads, exits 2 with one line."""
    import tempfile

    from hndesc_ros.datasets.bags import sequence_to_bag
    from hndesc_ros.datasets.kitti import KittiSequence
    bag = sequence_to_bag(KittiSequence(seq_dir, 0, 10),
                          Path(tempfile.mkdtemp(dir=tmp)) / 'truncated_bag')
    data = next(bag.glob('*.mcap'))
    data.write_bytes(data.read_bytes()[:int(data.stat().st_size * 0.6)])
    env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)))
    t = time.monotonic()
    r = subprocess.run([sys.executable, '-m', 'hndesc_ros.cli', 'play', str(bag)], env=env,
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln]
    return {'exit_code': r.returncode, 'stderr_lines': len(lines),
            'line': lines[-1] if lines else '', 'seconds': round(time.monotonic() - t, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--frames', type=int, default=1100, help='frames to send')
    p.add_argument('--extractor', default='residual-small')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--fault-rate', type=float, default=0.05, help='share of faulty frames')
    p.add_argument('--rate', type=float, default=10.0, help='highest publish rate, Hz')
    p.add_argument('--no-clean', action='store_true', help='skip the clean comparison run')
    p.add_argument('--out', default='outputs/soak')
    a = p.parse_args(argv)
    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.datasets.poses import write_tum
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    seq = KittiSequence(SEQ)
    data = yaml.safe_load((ROOT / 'config' / 'vo.yaml').read_text())
    data['frontend_node']['ros__parameters']['features']['extractor'] = a.extractor
    for node in ('frontend_node', 'backend_node'):
        # reproducible runs (no feedback timing), exact counts (every pair processed)
        data[node]['ros__parameters']['vo']['share_map'] = False
        data[node]['ros__parameters']['ros'].update(reliable=True, drop_stale=False)
    params = out / 'params.yaml'
    params.write_text(yaml.safe_dump(data))
    load = os.getloadavg()[0]
    print(f'soak: {a.frames} frames (KITTI 06 0-{len(seq) - 1} back and forth), extractor '
          f'{a.extractor}, seed {a.seed}, fault rate {a.fault_rate}, load average {load:.2f}',
          flush=True)
    report = {'load_average_1min': load, 'args': vars(a)}
    report['corrupt_weights'] = refuses_corrupt_weights(out, params)
    print(f'corrupt weights at start-up: {report["corrupt_weights"]}', flush=True)
    report['truncated_bag'] = truncated_bag_play(out, SEQ)
    print(f'truncated bag: {report["truncated_bag"]}', flush=True)
    plan = fault_plan(a.frames, a.seed, a.fault_rate)
    runs = {'faults': plan} if a.no_clean else {'faults': plan, 'clean': {}}
    for name, pl in runs.items():
        print(f'\n[{name}] {len(pl)} faults', flush=True)
        r = soak(seq, a.frames, params, pl, a.rate, lambda s: print(s, flush=True), out / name)
        stamps = np.array(sorted(r['odom'])) * 1e-9
        r.update(trajectory_error(seq, a.frames, r.pop('odom'), params))
        write_tum(out / f'{name}_odom_tum.txt', stamps[:len(r['est'])], r.pop('est'))
        write_tum(out / f'{name}_groundtruth_tum.txt', stamps[:len(r['gt'])], r.pop('gt'))
        report[name] = r
        ok = r['injected']['frontend'] == r['counted']['frontend'] and \
            r['injected']['backend'] == r['counted']['backend']
        rss = [x for x in r['rss'] if x['frame'] >= 200]
        growth = {w: (rss[-1][f'{w}_mb'] / rss[0][f'{w}_mb'] - 1) * 100 if len(rss) > 1 else
                  float('nan') for w in ('frontend', 'backend')}
        r['rss_growth_after_200_pct'] = growth
        r['injected_equals_counted'] = ok
        print(f'alive {r["nodes_alive_at_end"]}, exit {r["exit_codes_on_sigint"]}, front end '
              f'{r["frontend_frames"]} frames, odometry {r["odometry_messages"]}, ATE '
              f'{r["ate_rmse_m"]:.3f} m over {r["poses"]} poses, tracking lost '
              f'{r["frontend_tracking_lost"]} (front end) / {r["tracking_lost"]} (back end), '
              f'relocalised {r["relocalised"]}', flush=True)
        print(f'  injected {r["injected"]}\n  counted  {r["counted"]}  -> equal: {ok}')
        print(f'  RSS growth frame 200 -> end: front end {growth["frontend"]:+.1f} %, back '
              f'end {growth["backend"]:+.1f} %; stuck at {r["stuck_at_frames"] or "none"}')
    if 'clean' in report:
        ratio = report['faults']['ate_rmse_m'] / report['clean']['ate_rmse_m']
        report['ate_faults_over_clean'] = ratio
        print(f'\nATE with faults / clean: {ratio:.3f}')
    (out / 'soak.json').write_text(json.dumps(report, indent=1, default=str))
    print(f'wrote {out / "soak.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
