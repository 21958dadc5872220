#!/usr/bin/env python3
"""hndesc next to ORB-SLAM3 (stereo) on the same frames, on the same cores, in one run.

    pip install pyorbslam3     # ORB-SLAM3's Python bindings: GPL-3.0, a measuring tool only
    apt-get install -y libgl1 libegl1 libopengl0 libsm6 libice6 libx11-6 libxext6
    python bench/peers.py [--sequences 06 01 room] [--extractors residual-small rootsift]
                          [--config 'vo.klt_frames=1' ...] [--runs 3] [--no-paced]
                          [--json FILE]

ORB-SLAM3 runs through ``../shared/tools/orbslam3_peer.py`` in its own process (the median of
``--runs`` runs: it is multi-threaded and not deterministic); this package is never linked to
it. Each sequence is measured free-running (frames as fast as each system takes them: the
wall frames/s) and paced at the camera rate (``times.txt``, as a live camera would feed it;
ORB-SLAM3's local mapping then gets the time between frames). hndesc's inline mapping is
deterministic, so its paced ATE is its free-running one; paced, the table gives how many
frames it finished within one frame interval of their arrival. Every speed is also a ratio to
ORB-SLAM3's in the same run; the load average before each job goes with it. hndesc first
gets one untimed run of the first sequence's first frames (a process's first frames pay
one-off costs; ORB-SLAM3's median of three leaves out its own slow first run).

Next to the ATE after SE(3) alignment (the issue's figure), each system gets its shape and its
scale apart: the ATE after Sim(3) alignment, and the length of its path over the ground
truth's. A stereo rig measures scale through its calibration, so a path that is a few per
cent long everywhere (KITTI 01: ORB-SLAM3 5 % long with a Sim(3) ATE of 0.04 m) is a
calibration or ground-truth matter that no image can show, and it dominates the SE(3) ATE.
``room`` is a synthetic indoor stereo rig (752 x 480, 0.11 m baseline, 20 Hz, a hand-held
walk through a room papered with photographs; :mod:`hndesc_ros.datasets.room`), rendered with
exact ground truth for this run: the shared data hold no indoor stereo.
Each ``--config`` (space-separated ``key=value`` overrides of the defaults) adds a row after
the extractors'.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hndesc_ros.config import load_config, parse_overrides  # noqa: E402
from hndesc_ros.datasets.kitti import KittiSequence  # noqa: E402
from hndesc_ros.datasets.poses import read_trajectory  # noqa: E402
from hndesc_ros.datasets.room import shared_textures, write_room  # noqa: E402
from hndesc_ros.eval import trajectory as tj  # noqa: E402
from hndesc_ros.runner import run_sequence  # noqa: E402

SHARED = Path(__file__).resolve().parent.parent.parent / 'shared'
PEER = SHARED / 'tools' / 'orbslam3_peer.py'
ROOM_FRAMES = 200   # 10 s of the synthetic indoor walk at 20 Hz
WARM_UP_FRAMES = 10  # one untimed run of the first sequence before the table's runs


def write_rows(path, rows) -> None:
    """The bench's rows as JSON at ``path`` (nothing when path is None)."""
    if path:
        Path(path).write_text(json.dumps(rows, indent=1))


def sequence(name: str, tmp: Path) -> Tuple[Path, Path, List[str]]:
    """(sequence folder, ground truth, extra ORB-SLAM3 arguments) of a KITTI sequence of the
    shared data, or of ``room``: the synthetic indoor stereo rig of
    :mod:`hndesc_ros.datasets.room`, rendered into ``tmp`` (with ORB-SLAM3's own feature
    count for a 752 x 480 rig, its EuRoC setting of 1200)."""
    if name != 'room':
        return (SHARED / 'data' / 'kitti' / 'sequences' / name,
                SHARED / 'data' / 'kitti' / 'poses' / f'{name}.txt', [])
    print(f'rendering the synthetic room ({ROOM_FRAMES} stereo pairs, about 1.5 min)',
          flush=True)
    seq = write_room(tmp / 'room', shared_textures(SHARED / 'data'), frames=ROOM_FRAMES)
    return seq, tmp / 'room' / 'poses' / 'room.txt', ['--features', '1200']


def orbslam3(seq_dir: Path, poses: Path, runs: int, paced: bool, out: Path,
             peer_args: Sequence[str] = ()) -> dict:
    """The peer tool's summary (medians over runs), with the medians of its runs' ATE after
    Sim(3) alignment and path length over the ground truth's (``ate_sim3_m``, ``path_ratio``
    of :func:`hndesc_ros.eval.trajectory.evaluate`, as hndesc's metrics have them)."""
    cmd = [sys.executable, str(PEER), '--sequence', str(seq_dir), '--poses', str(poses),
           '--runs', str(runs), '--out', str(out), *(['--realtime'] if paced else []),
           *peer_args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ['no output']
        raise SystemExit(f'bench/peers.py: ORB-SLAM3 failed on {seq_dir.name}: {tail[0]} '
                         '(pip install pyorbslam3, and the apt packages in this docstring)')
    summary = json.loads((out / 'summary.json').read_text())
    gt = read_trajectory(poses)[1]
    each = []
    for traj in sorted(out.glob('run*/trajectory_kitti.txt')):
        est = read_trajectory(traj)[1]
        each.append(tj.evaluate(est, gt[:len(est)], 'se3'))
    for key in ('ate_sim3_m', 'path_ratio'):
        summary[key] = float(np.median([e[key] for e in each])) if each else float('nan')
    return summary


class Paced:
    """Frames of a sequence released at their timestamps (a live camera); records when each
    was released so that the caller can tell how late its result came."""

    def __init__(self, seq):
        self.seq, self.released = seq, []

    def __len__(self):
        return len(self.seq)

    def frame(self, k):
        """Frame k, not before its timestamp; ``released`` gets the time it arrived (its
        timestamp), also when the reader asks for it late (a backlog)."""
        if k == 0:
            self.t0 = time.perf_counter() - self.seq.times[0]
        due = self.t0 + self.seq.times[k]
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self.released.append(due)
        return self.seq.frame(k)

    def __getattr__(self, name):
        return getattr(self.seq, name)


def hndesc(seq_dir: Path, overrides: dict, paced: bool) -> dict:
    cfg = load_config(None, overrides)
    seq = KittiSequence(seq_dir)
    if not paced:
        return run_sequence(seq, cfg)['metrics']
    src = Paced(seq)
    done = []
    run = run_sequence(src, cfg, on_result=lambda r: done.append(time.perf_counter()))
    dt = float(np.median(np.diff(seq.times)))
    # on time: the pose within one frame interval of the frame's arrival
    late = np.array(done) - np.array(src.released[:len(done)])
    m = run['metrics']
    m['paced_on_time'] = int((late <= dt).sum())
    m['paced_latency_ms_median'] = float(np.median(late) * 1e3)
    return m


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--sequences', nargs='+', default=['06', '01'])
    ap.add_argument('--extractors', nargs='+', default=['residual-small', 'rootsift'])
    ap.add_argument('--runs', type=int, default=3, help='ORB-SLAM3 runs per setting (median)')
    ap.add_argument('--config', action='append', default=[], metavar="'K=V ...'",
                    help='a row with these overrides of the defaults (repeatable)')
    ap.add_argument('--no-paced', action='store_true', help='free-running only')
    ap.add_argument('--json', help='write every figure here')
    args = ap.parse_args()
    if not PEER.is_file():
        print(f'bench/peers.py: {PEER} not found (the shared tools folder)', file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix='hndesc-peers-') as tmp:
        for i, name in enumerate(args.sequences):
            seq_dir, poses, peer_args = sequence(name, Path(tmp))
            if i == 0:  # untimed: a process's first frames pay one-off costs (ORB-SLAM3's
                # first of its runs is its slowest too, and the median leaves it out)
                run_sequence(KittiSequence(seq_dir, count=WARM_UP_FRAMES), load_config())
            for paced in ([False] if args.no_paced else [False, True]):
                mode = 'paced' if paced else 'free'
                load = os.getloadavg()[0]
                peer = orbslam3(seq_dir, poses, args.runs, paced, Path(tmp) / f'{name}_{mode}',
                                peer_args)
                rows.append({'sequence': name, 'mode': mode, 'system': 'ORB-SLAM3',
                             'ate_m': peer['ate_rmse_m'], 'fps': peer['wall_fps'],
                             'ate_sim3_m': peer['ate_sim3_m'],
                             'path_ratio': peer['path_ratio'],
                             'lost': peer['lost'], 'load': load})
                ref = rows[-1]
                print(f"{name} {mode:<5} ORB-SLAM3 (median of {args.runs}) ATE "
                      f"{ref['ate_m']:.3f} m (Sim(3) {ref['ate_sim3_m']:.3f} m, length "
                      f"{ref['path_ratio']:.3f}x), {ref['fps']:.1f} frames/s "
                      f"(load {load:.1f})", flush=True)
                settings = ([(ex, {'features.extractor': ex}) for ex in args.extractors]
                            + [(c, parse_overrides(c.split())) for c in args.config])
                for ex, overrides in settings:
                    load = os.getloadavg()[0]
                    m = hndesc(seq_dir, overrides, paced)
                    row = {'sequence': name, 'mode': mode, 'system': f'hndesc {ex}',
                           'ate_m': m['ate_rmse_m'], 'fps': m['wall_fps'],
                           'ate_sim3_m': m['ate_sim3_m'], 'path_ratio': m['path_ratio'],
                           'lost': m['tracking_lost'], 'load': load,
                           'ate_ratio': m['ate_rmse_m'] / ref['ate_m'],
                           'fps_ratio': m['wall_fps'] / ref['fps'],
                           'obs_per_map_point': m.get('map_point_observations'),
                           'obs_per_landmark': m.get('obs_per_landmark')}
                    if paced:
                        row['on_time'] = m['paced_on_time']
                        row['latency_ms'] = m['paced_latency_ms_median']
                    rows.append(row)
                    extra = (f", {row['on_time']}/{m['frames']} on time, median latency "
                             f"{row['latency_ms']:.0f} ms" if paced else '')
                    print(f"{name} {mode:<5} hndesc {ex:<15} ATE {row['ate_m']:.3f} m "
                          f"({row['ate_ratio']:.2f}x; Sim(3) {row['ate_sim3_m']:.3f} m, "
                          f"length {row['path_ratio']:.3f}x), {row['fps']:.1f} frames/s "
                          f"({row['fps_ratio']:.2f}x){extra} (load {load:.1f})", flush=True)
    print('\n| sequence | mode | system | ATE (m) | ATE / ORB-SLAM3 | Sim(3) ATE (m) | '
          'length / GT | frames/s | frames/s / ORB-SLAM3 | load |')
    print('|---|---|---|---|---|---|---|---|---|---|')
    for r in rows:
        print(f"| {r['sequence']} | {r['mode']} | {r['system']} | {r['ate_m']:.4f} | "
              f"{r.get('ate_ratio', 1.0):.2f} | {r['ate_sim3_m']:.4f} | "
              f"{r['path_ratio']:.3f} | {r['fps']:.1f} | {r.get('fps_ratio', 1.0):.2f} | "
              f"{r['load']:.1f} |")
    write_rows(args.json, rows)
    return 0


if __name__ == '__main__':
    sys.exit(main())
