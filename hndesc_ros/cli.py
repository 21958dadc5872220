"""``hndesc-vo``: command-line front end, thin over the library.

Every subcommand maps to one library call; bad input exits with code 2 and one line.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from hndesc_ros.config import (ALIGNMENTS, BACKENDS, EXTRACTORS, KEYPOINTS, LIGHT_CHANGES,
                               TRAJECTORY_FORMATS, Config, load_config, parse_overrides)
from hndesc_ros.errors import ConfigError, HndescError

LOG = logging.getLogger('hndesc-vo')
SHARED = Path(__file__).resolve().parent.parent.parent / 'shared' / 'data'


# ----------------------------------------------------------------------------- helpers
def _add_feature_args(p: argparse.ArgumentParser) -> None:
    p.add_argument('--config', help='YAML config (plain or ROS params file)')
    p.add_argument('--extractor', choices=EXTRACTORS)
    p.add_argument('--keypoints', choices=KEYPOINTS)
    p.add_argument('--backend', choices=BACKENDS)
    p.add_argument('--weights', help='checkpoint / ONNX / engine (default: shipped model; '
                   'eval-hpatches: for the --extractor method)')
    p.add_argument('--device', help='torch device, e.g. cpu or cuda')
    p.add_argument('--max-keypoints', type=int)
    p.add_argument('--set', action='append', default=[], metavar='KEY=VALUE',
                   help='any config key, e.g. --set vo.share_map=false (repeatable)')


def _config(args) -> Config:
    over = {}
    for key in ('extractor', 'keypoints', 'backend', 'weights', 'device', 'max_keypoints'):
        if getattr(args, key, None) is not None:
            over[f'features.{key}'] = getattr(args, key)
    over.update(parse_overrides(getattr(args, 'set', [])))
    return load_config(getattr(args, 'config', None), over)


def _extractor(cfg: Config):
    from hndesc_ros.features import Extractor
    return Extractor(cfg.features)


# ----------------------------------------------------------------------------- commands
def cmd_extract(args) -> int:
    from hndesc_ros.features import read_image
    cfg = _config(args)
    ex = _extractor(cfg)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in args.images:
        f = ex.extract(read_image(path))
        dst = out / (Path(path).stem + '.npz')
        np.savez(dst, keypoints=f.keypoints, descriptors=f.descriptors, scores=f.scores,
                 scales=f.scales, angles=f.angles)
        print(f'{path}: {len(f)} keypoints, {f.descriptors.shape[1]}-D -> {dst}')
        if not len(f):
            print(f'hndesc-vo: warning: {path}: 0 keypoints (a featureless image: blank, '
                  'saturated or out of focus?)', file=sys.stderr)
    return 0


def cmd_match(args) -> int:
    from hndesc_ros.eval.plots import plot_matches
    from hndesc_ros.features import match_numpy, read_image
    from hndesc_ros.features.matching import verify_matches
    cfg = _config(args)
    ex = _extractor(cfg)
    im0, im1 = read_image(args.image1), read_image(args.image2)
    f0, f1 = ex.extract(im0), ex.extract(im1)
    m = match_numpy(f0.descriptors, f1.descriptors, cfg.matching.ratio)
    v = verify_matches(f0.keypoints, f1.keypoints, m.indices, args.geometry,
                       args.ransac_threshold)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, keypoints0=f0.keypoints, keypoints1=f1.keypoints,
             descriptors0=f0.descriptors, descriptors1=f1.descriptors, matches=m.indices,
             distances=m.distances, inliers=v.inliers, geometry=v.geometry,
             model=v.model if v.model is not None else np.full((3, 3), np.nan))
    n_in, n_out = v.counts
    print(f'{len(f0)} / {len(f1)} keypoints, {len(m)} matches, {n_in} inliers / {n_out} '
          f'outliers ({v.geometry} RANSAC, {v.threshold:g} px) -> {out}')
    if args.plot:
        plot_matches(im0, im1, f0.keypoints, f1.keypoints, m.indices, v, args.plot,
                     f'{Path(args.image1).name} - {Path(args.image2).name}, '
                     f'{cfg.features.extractor}', dpi=args.dpi)
        print(f'plot -> {args.plot}')
    return 0


def cmd_eval_hpatches(args) -> int:
    from hndesc_ros.eval import hpatches
    cfg = _config(args)
    names = args.methods.split(',')
    unknown = [n for n in names if n not in EXTRACTORS]
    if unknown:
        raise ConfigError(f'--methods: {", ".join(unknown)} not in {", ".join(EXTRACTORS)}')
    extractors = {}
    for name in names:
        from hndesc_ros.features import Extractor
        # --weights belong to the method --extractor names; the others run shipped models
        weights = cfg.features.weights if name == cfg.features.extractor else ''
        extractors[name] = Extractor(replace(cfg.features, extractor=name, weights=weights)
                                     .at_full_resolution()).extract
    results = {}
    for budget in ([0] + ([args.budget] if args.budget else [])):
        res = hpatches.evaluate(args.dir, extractors, budget, progress=True)
        label = 'all keypoints' if budget == 0 else f'{budget} keypoints'
        print(f'\n{args.dir} ({label}, mutual NN):')
        print(hpatches.format_table(res))
        results[label] = res
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / 'hpatches.json').write_text(json.dumps(results, indent=1))
    hpatches.plot_mma(results['all keypoints'], out / 'mma.png')
    print(f'\nwrote {out / "hpatches.json"} and {out / "mma.png"}')
    return 0


def cmd_kitti(args) -> int:
    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.runner import format_metrics, run_sequence, write_outputs
    cfg = _config(args)
    seq = KittiSequence(args.sequence, args.first, args.count, color=args.color,
                        poses=args.poses, mono=args.mono)
    run = run_sequence(seq, cfg, mono=args.mono, gt_scale=args.gt_scale, progress=True)
    paths = write_outputs(run, args.out, cfg, f'{Path(args.sequence).name} '
                          f'{cfg.features.extractor}')
    print(format_metrics(run['metrics']))
    print(f'wrote {", ".join(str(p) for p in paths.values())}')
    return 0


def _frame_length(option: str, value: str, example: str) -> Tuple[int, int]:
    """(FRAME, LENGTH) of an ``option`` given as FRAME:LENGTH; one line (HndescError) if not."""
    try:
        at, length = (int(v) for v in value.split(':'))
    except ValueError:
        raise HndescError(f'{option} {value}: expected FRAME:LENGTH, e.g. {example}') from None
    return at, length


def cmd_variant(args) -> int:
    """Write a variant of a KITTI sequence (stops, ping-pong, blackouts, light) as a new
    sequence."""
    from hndesc_ros.datasets.kitti import KittiSequence
    from hndesc_ros.datasets.variants import ping_pong_order, write_variant
    count = len(KittiSequence(args.sequence))
    order = list(range(count))
    if args.ping_pong:
        order = ping_pong_order(count)
    for stop in args.stop:
        at, length = _frame_length('--stop', stop, '100:40')
        if length < 0:
            raise HndescError(f'--stop {stop}: the length must be >= 0')
        pos = order.index(at) if at in order else -1
        if pos < 0:
            raise HndescError(f'--stop {stop}: frame {at} is not in the sequence (0..{count - 1})')
        order[pos + 1:pos + 1] = [at] * length
    black = []
    for spec in args.blackout:
        at, length = _frame_length('--blackout', spec, '20:6')
        if length < 1:
            raise HndescError(f'--blackout {spec}: the length must be >= 1')
        black += range(at, at + length)  # write_variant checks they lie in the variant
    seq_dir = write_variant(args.sequence, args.out, order, noise_sigma=args.noise, seed=args.seed,
                            poses=args.poses, light=args.light, scale=args.scale,
                            right_shift=args.right_shift, blackout=black)
    print(f'{len(order)} frames ({count} source frames) -> {seq_dir}')
    return 0


def cmd_eval_traj(args) -> int:
    from hndesc_ros.eval import trajectory as tj
    from hndesc_ros.datasets import poses as poses_io
    sg, gt = poses_io.read_trajectory(args.gt, args.format)
    se, est = poses_io.read_trajectory(args.est, args.format)
    if args.format == 'tum':
        ia, ib = tj.associate(se, sg, args.max_diff)
        if len(ia) < 3:
            raise HndescError(
                f'only {len(ia)} poses of {args.est} have a --gt stamp within {args.max_diff} s '
                f'(est {se.min():.2f}..{se.max():.2f} s, gt {sg.min():.2f}..{sg.max():.2f} s): '
                'the two files use different clocks; compare with the ground truth written '
                'with the same stamps (kitti2bag writes <bag>_groundtruth_tum.txt)')
        est, gt = est[ia], gt[ib]
    elif len(est) != len(gt):
        raise HndescError(f'KITTI files must have the same number of poses ({len(est)} vs '
                          f'{len(gt)})')
    m = tj.evaluate(est, gt, args.align)
    for key, value in m.items():
        print(f'{key:>20}: {value:.4f}' if isinstance(value, float) else f'{key:>20}: {value}')
    if args.out:
        Path(args.out).write_text(json.dumps(m, indent=1))
        print(f'wrote {args.out}')
    return 0


def cmd_demo(args) -> int:
    """The most complete pipeline: VO on real KITTI 06 if present, else on synthetic data."""
    from hndesc_ros.runner import format_metrics, run_sequence, write_comparison, write_outputs
    cfg = load_config(args.config)
    out = Path(args.out)
    seq_dir = SHARED / 'kitti' / 'sequences' / '06'
    if seq_dir.is_dir() and not args.synthetic:
        from hndesc_ros.datasets.kitti import KittiSequence
        seq, name = KittiSequence(seq_dir), 'KITTI 06 (real frames, ../shared/data)'
    else:
        from hndesc_ros.datasets.synthetic import SyntheticSequence
        seq, name = SyntheticSequence(), 'synthetic corridor (embedded, exact ground truth)'
    print(f'hndesc_ros demo: stereo VO on {name}, {len(seq)} frames')
    runs = {}
    for extractor in dict.fromkeys((cfg.features.extractor, 'rootsift')):
        cfg.features.extractor = extractor
        print(f'\n[{extractor}] extractor={extractor} backend={cfg.features.backend} '
              'back end=GTSAM fixed-lag smoother')
        run = run_sequence(seq, cfg, progress=True)
        paths = write_outputs(run, out / extractor, cfg, f'{name}: {extractor}')
        print(format_metrics(run['metrics']))
        print(f'outputs: {paths["metrics"].parent}/ (trajectory_kitti.txt, trajectory_tum.txt, '
              'metrics.json, trajectory.png)')
        runs[extractor] = {key: run[key] for key in ('poses', 'gt', 'metrics')}
    print(f'\n{"extractor":<16}{"ATE (m)":>9}{"% path":>8}{"RPE (m)":>9}{"wall fps":>10}')
    for name_, run in runs.items():
        m = run['metrics']
        print(f'{name_:<16}{m.get("ate_rmse_m", float("nan")):>9.3f}'
              f'{m.get("ate_pct_of_path", float("nan")):>8.2f}'
              f'{m.get("rpe_trans_m", float("nan")):>9.3f}{m["wall_fps"]:>10.1f}')
    if len(runs) > 1:
        figure = write_comparison(runs, out / 'trajectories.png', name)
        print(f'\ncomparison of the extractors: {figure}')
    print(f'\nall outputs under {out.resolve()}')
    return 0


# ----------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='hndesc-vo', description=__doc__)
    p.add_argument('-v', '--verbose', action='store_true')
    sub = p.add_subparsers(dest='command', required=True)

    s = sub.add_parser('extract', help='keypoints + descriptors of images -> .npz each')
    s.add_argument('images', nargs='+')
    s.add_argument('--out', required=True)
    _add_feature_args(s)
    s.set_defaults(func=cmd_extract)

    s = sub.add_parser('match', help='match two images, verify with RANSAC -> .npz (+ PNG)')
    s.add_argument('image1')
    s.add_argument('image2')
    s.add_argument('--out', required=True, help='FILE.npz')
    s.add_argument('--plot', help='FILE.png with the matches drawn: RANSAC inliers green, '
                   'outliers red')
    s.add_argument('--geometry', choices=('fundamental', 'homography'), default='fundamental',
                   help='RANSAC model verifying the matches (default: fundamental)')
    s.add_argument('--ransac-threshold', type=float, default=3.0, metavar='PX',
                   help='RANSAC inlier threshold in pixels: distance to the epipolar line '
                   '(fundamental) or reprojection error (homography); default 3')
    s.add_argument('--dpi', type=int, default=100, help='resolution of the --plot PNG')
    _add_feature_args(s)
    s.set_defaults(func=cmd_match)

    s = sub.add_parser('eval-hpatches', help='MMA / homography accuracy on HPatches scenes')
    s.add_argument('dir')
    s.add_argument('--methods', default='sift,rootsift,cnn,residual',
                   help=f'comma-separated extractors ({", ".join(EXTRACTORS)})')
    s.add_argument('--budget', type=int, default=1000, help='also at this many keypoints')
    s.add_argument('--out', default='outputs/hpatches')
    _add_feature_args(s)
    s.set_defaults(func=cmd_eval_hpatches, max_keypoints=100000)

    s = sub.add_parser('kitti', help='stereo (or mono) VO on a KITTI odometry sequence')
    s.add_argument('--sequence', required=True, help='.../sequences/NN')
    s.add_argument('--first', type=int, default=0)
    s.add_argument('--count', type=int)
    s.add_argument('--poses', help='ground truth (default ../../poses/NN.txt)')
    s.add_argument('--color', action='store_true', help='image_2/image_3')
    s.add_argument('--mono', action='store_true', help='monocular essential-matrix VO')
    s.add_argument('--gt-scale', action='store_true', help='mono: scale from ground truth')
    s.add_argument('--out', required=True)
    _add_feature_args(s)
    s.set_defaults(func=cmd_kitti)

    s = sub.add_parser('variant', help='a KITTI sequence with stops, reversed or in other '
                       'light, as a new KITTI sequence (repeated frames get fresh sensor noise; '
                       'the GT follows)')
    s.add_argument('--sequence', required=True, help='.../sequences/NN')
    s.add_argument('--out', required=True, help='root of the new dataset (sequences/NN, poses/)')
    s.add_argument('--poses', help='ground truth (default ../../poses/NN.txt)')
    s.add_argument('--stop', action='append', default=[], metavar='FRAME:LENGTH',
                   help='stand still at FRAME for LENGTH more frames (repeatable)')
    s.add_argument('--ping-pong', action='store_true', help='forwards, then back to frame 0')
    s.add_argument('--blackout', action='append', default=[], metavar='FRAME:LENGTH',
                   help='LENGTH black pairs from frame FRAME of the variant on (a covered lens; '
                   'the camera moves on unseen; repeatable)')
    s.add_argument('--light', choices=LIGHT_CHANGES, help='change the light of every pair: '
                   'flicker (gain U(0.45, 1.6) a frame), dark (gamma 1.6, gain 0.18, noise 3), '
                   'steps (gain 0.35 on every other 5 frames), blur (motion, 0.6 %% of the '
                   'width), grain (the same light, sensor noise 0.7: how far the clean ATE '
                   'moves), noise (the same light, sensor noise 15: the dark\'s noise without '
                   'the dark)')
    s.add_argument('--scale', type=float, default=1.0, help='image size factor in (0, 4]: '
                   'below 1 a smaller camera, above 1 one of more pixels (calib.txt follows)')
    s.add_argument('--right-shift', type=float, default=0.0, metavar='PX',
                   help='move the right image PX to the right (a rectification offset)')
    s.add_argument('--noise', type=float, default=2.0, help='sensor noise on repeated frames '
                   '(grey levels, default 2)')
    s.add_argument('--seed', type=int, default=0)
    s.set_defaults(func=cmd_variant)

    s = sub.add_parser('eval-traj', help='ATE / RPE / KITTI errors of two trajectory files')
    s.add_argument('--gt', required=True)
    s.add_argument('--est', required=True)
    s.add_argument('--format', choices=TRAJECTORY_FORMATS, default='kitti')
    s.add_argument('--align', choices=ALIGNMENTS, default='se3')
    s.add_argument('--max-diff', type=float, default=0.01, help='TUM stamp association (s)')
    s.add_argument('--out', help='metrics JSON')
    s.set_defaults(func=cmd_eval_traj)

    s = sub.add_parser('demo', help='run the main pipeline end to end and report')
    s.add_argument('--out', default='outputs/demo')
    s.add_argument('--config')
    s.add_argument('--synthetic', action='store_true', help='use the embedded synthetic data')
    s.set_defaults(func=cmd_demo)

    from hndesc_ros.ros.commands import add_commands  # parsers only; rclpy loads lazily
    add_commands(sub)
    return p


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format='%(levelname)s %(name)s: %(message)s')
    try:
        return args.func(args) or 0
    except HndescError as exc:
        print(f'hndesc-vo: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('hndesc-vo: interrupted', file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: one line; the traceback with -v
        if args.verbose:
            raise
        print(f'hndesc-vo: internal error: {type(exc).__name__}: {exc} (run with -v for the '
              'traceback)', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
