#!/usr/bin/env python3
"""The ROS graph at camera rate over real DDS: a camera-like publisher (this script) sends real
KITTI 06 stereo pairs with SensorDataQoS (best effort), stamped with the wall clock, to the two
nodes (their own processes, default ``config/vo.yaml``: SensorDataQoS, latest pair wins).

    python bench/latency.py [--rates 30 20 10 5] [--frames 100] [--extractor residual-small]

For each Fast DDS set-up (``profile``: every process with config/fastdds_large_data.xml, the
16 MB shared-memory segment; ``default``: Fast DDS's own transports) and rate it reports: pairs
reaching the front end (complete pairs counted at the node: processed + replaced by a newer one),
pairs processed, odometry messages, latency image stamp -> odometry received (median, p95),
stale drops, the median latency to the front end's matches (``FE med``: the rest is the back
end) and the CPU each process used (cores: CPU time / wall time; 2.00 = both cores full), so
that a figure can be read against the machine's load. Each set-up runs in a fresh process
(Fast DDS reads its profile once a process). The 51 frames of the shared data are replayed back
and forth for ``--frames``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'bench'))

SEQ = ROOT.parent / 'shared' / 'data' / 'kitti' / 'sequences' / '06'
NO_PROFILE = '<?xml version="1.0" encoding="UTF-8"?>\n<dds><profiles/></dds>\n'


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (s)."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def one_run(rate: float, frames: int, params: Path) -> dict:
    """Start the nodes, publish ``frames`` pairs at ``rate``, collect what came back."""
    from sensor_msgs.msg import PointCloud2
    from std_msgs.msg import String

    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.ros.conversions import stamp_to_ns
    from soak import Driver, start_nodes, stop_nodes

    procs = start_nodes(params)
    drv = Driver(KittiSequence(SEQ), rate, reliable=False)  # SensorDataQoS, like a camera
    stages = []  # the front end's ms per stage, in the graph
    drv.node.create_subscription(String, 'features/timing',
                                 lambda m: stages.append(json.loads(m.data)), 100)
    matches = {}  # image stamp -> wall time the front end's matches arrived
    drv.node.create_subscription(
        PointCloud2, 'features/matches',
        lambda m: matches.setdefault(stamp_to_ns(m.header.stamp), time.time()), 100)
    drv.wait_subscribers()
    drv.spin(lambda: False, 4.0)  # the nodes load their models after their subscriptions exist
    pids = {'camera': os.getpid(), 'frontend': procs[0].pid, 'backend': procs[1].pid}
    cpu0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    for j in range(frames):
        drv.spin(lambda: False, t0 + j / rate - time.monotonic())
        for side in ('left', 'right'):  # drivers publish camera_info with every frame
            drv.camera_info(side)
        drv.pair(j, pace=False, stamp=time.time_ns())
    drv.spin(lambda: False, 3.0)
    wall = time.monotonic() - t0
    cpu = {k: round((cpu_seconds(p) - cpu0[k]) / wall, 2) for k, p in pids.items()}
    drv.close()
    stop_nodes(procs)
    lat = {ns: drv.received[ns] - ns * 1e-9 for ns in drv.odom}
    to_fe = {ns: t - ns * 1e-9 for ns, t in matches.items()}
    status = drv.status['frontend']
    processed, stale = status.get('frames', 0), status.get('stale_dropped', 0)
    dropped = status.get('dropped', {})
    bad = sum(dropped.values()) - dropped.get('unpaired_image', 0)  # complete, but refused
    stage_names = sorted({k for st in stages for k in st})
    return {'rate_hz': rate, 'sent': frames, 'reached_frontend': processed + stale + bad,
            'processed': processed, 'stale_dropped': stale, 'odometry': len(lat),
            'unpaired': dropped.get('unpaired_image', 0),
            **percentiles('latency', lat.values()),
            # where the latency is spent: image stamp -> matches, matches -> odometry
            'matches_median_ms': median_ms(to_fe.values()),
            'matches_to_odom_median_ms': median_ms(lat[ns] - to_fe[ns] for ns in lat
                                                   if ns in to_fe),
            'cpu_cores': cpu,  # CPU time / wall time of each process during the run
            'frontend_stage_ms': {k: round(statistics.median(st.get(k, 0.0) for st in stages), 1)
                                  for k in stage_names},
            # [to matches (None: the bench missed that message), to odometry] per frame
            'per_frame_ms': [[round(1e3 * to_fe[ns]) if ns in to_fe else None,
                              round(1e3 * lat[ns])] for ns in sorted(lat)]}


def percentiles(name: str, seconds) -> dict:
    """Median, p95 and max (ms) of the values in ``seconds``."""
    ms = sorted(1e3 * v for v in seconds)
    if not ms:
        return {f'{name}_{k}_ms': float('nan') for k in ('median', 'p95', 'max')}
    return {f'{name}_median_ms': statistics.median(ms),
            f'{name}_p95_ms': ms[int(0.95 * (len(ms) - 1))], f'{name}_max_ms': ms[-1]}


def median_ms(seconds) -> float:
    """Median (ms) of the values in ``seconds``; NaN when there are none."""
    ms = [1e3 * v for v in seconds]
    return statistics.median(ms) if ms else float('nan')


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--extractor', default='residual-small')
    p.add_argument('--frames', type=int, default=100)
    p.add_argument('--rates', type=float, nargs='+', default=[30, 20, 10, 5])
    p.add_argument('--setups', nargs='+', default=['profile', 'default'],
                   choices=['profile', 'default'])
    p.add_argument('--out', default='outputs/latency')
    p.add_argument('--one', nargs=2, metavar=('SETUP', 'RATE'), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    params = out / 'params.yaml'
    if a.one:
        print(json.dumps(one_run(float(a.one[1]), a.frames, params)))
        return 0
    data = yaml.safe_load((ROOT / 'config' / 'vo.yaml').read_text())
    data['frontend_node']['ros__parameters']['features']['extractor'] = a.extractor
    params.write_text(yaml.safe_dump(data))
    (out / 'no_profile.xml').write_text(NO_PROFILE)
    print(f'load average {os.getloadavg()[0]:.2f}; extractor {a.extractor}; {a.frames} pairs '
          'per run, SensorDataQoS publisher, default vo.yaml (SensorDataQoS, latest wins)',
          flush=True)
    print(f'{"set-up":<9}{"rate":>6}{"reach FE":>10}{"processed":>10}{"stale":>7}{"odom":>6}'
          f'{"lat med":>9}{"p95":>7}{"max":>7}{"FE med":>8}   CPU cores camera/FE/BE')
    rows = []
    for setup in a.setups:
        for rate in a.rates:
            env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)))
            env['FASTDDS_DEFAULT_PROFILES_FILE'] = str(
                ROOT / 'config' / 'fastdds_large_data.xml' if setup == 'profile'
                else out / 'no_profile.xml')
            r = subprocess.run([sys.executable, __file__, '--one', setup, str(rate), '--frames',
                                str(a.frames), '--out', str(out)], env=env, capture_output=True,
                               text=True, timeout=600)
            if r.returncode:
                print(r.stderr[-2000:])
                return 1
            row = dict(json.loads(r.stdout.strip().splitlines()[-1]), setup=setup)
            rows.append(row)
            print(f'{setup:<9}{rate:>6.0f}{row["reached_frontend"]:>6}/{row["sent"]:<3}'
                  f'{row["processed"]:>10}{row["stale_dropped"]:>7}{row["odometry"]:>6}'
                  f'{row["latency_median_ms"]:>9.0f}{row["latency_p95_ms"]:>7.0f}'
                  f'{row["latency_max_ms"]:>7.0f}{row["matches_median_ms"]:>8.0f}   '
                  + '/'.join(f'{v:.2f}' for v in row['cpu_cores'].values()), flush=True)
            time.sleep(1.0)
    (out / 'latency.json').write_text(json.dumps(rows, indent=1))
    print(f'wrote {out / "latency.json"}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
