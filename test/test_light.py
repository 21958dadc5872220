"""Light that changes: the variants' photometric changes on real KITTI frames, and the front
end's light normalisation (``features.light``) that keeps SIFT's absolute contrast threshold
finding the scene in the dark."""
import cv2
import numpy as np
import pytest

from hndesc_ros.config import ConfigError, load_config
from hndesc_ros.datasets.kitti import KittiSequence
from hndesc_ros.datasets.variants import change_light, light_params, write_variant
from hndesc_ros.errors import HndescError
from hndesc_ros.features import Sift
from hndesc_ros.features.image import (noise_sigma, normalise_light, stretch_levels,
                                       suppress_noise)
from hndesc_ros.runner import format_metrics, run_sequence


def test_light_changes_follow_their_definitions(kitti_frame):
    rng = np.random.default_rng(0)
    steps = [light_params('steps', k, rng)['gain'] for k in range(20)]
    assert steps == [1.0] * 5 + [0.35] * 5 + [1.0] * 5 + [0.35] * 5
    gains = [light_params('flicker', k, rng)['gain'] for k in range(200)]
    assert 0.45 <= min(gains) and max(gains) <= 1.6 and np.std(gains) > 0.2
    dark = change_light(kitti_frame, light_params('dark', 0, rng), rng)
    assert dark.dtype == np.uint8 and dark.shape == kitti_frame.shape
    assert dark.mean() < 0.15 * kitti_frame.mean()
    blur = change_light(kitti_frame, light_params('blur', 0, rng), rng)
    # a horizontal blur: rows lose more of their gradient than columns
    dx = np.abs(np.diff(blur.astype(float), axis=1)).mean() / np.abs(
        np.diff(kitti_frame.astype(float), axis=1)).mean()
    dy = np.abs(np.diff(blur.astype(float), axis=0)).mean() / np.abs(
        np.diff(kitti_frame.astype(float), axis=0)).mean()
    assert dx < 0.6 and dx < dy
    # grain: the same light with invisible noise (the clean ATE's own spread, bench/robustness),
    # which the front end neither stretches nor blurs as it would a dark pair
    grain = change_light(kitti_frame, light_params('grain', 0, rng), rng)
    diff = grain.astype(float) - kitti_frame
    assert abs(diff.mean()) < 0.05 and 0.5 < diff.std() < 0.9 and np.abs(diff).max() <= 4
    lit = normalise_light([grain], 'stretch')
    assert lit[0] is grain and suppress_noise(lit, load_config().features.max_noise)[0] is grain
    # noise: the dark's noise in good light. Not stretched (well exposed), it reads within 15 %
    # of a stretched dark frame's noise, and the front end blurs it as it blurs a dark pair
    noise = change_light(kitti_frame, light_params('noise', 0, rng), rng)
    assert normalise_light([noise], 'stretch')[0] is noise
    dark_read = noise_sigma(normalise_light([dark], 'stretch')[0])
    assert abs(noise_sigma(noise) / dark_read - 1) < 0.15 and dark_read > 10
    assert suppress_noise([noise], load_config().features.max_noise)[0] is not noise
    with pytest.raises(HndescError, match='unknown light change'):
        light_params('fog', 0, rng)


def test_a_pair_shares_its_light(tmp_path, kitti06):
    """One shutter: both images of a pair get the same gain (their means change alike)."""
    seq = KittiSequence(write_variant(kitti06, tmp_path, [0, 1, 2], light='flicker', seed=4))
    src = KittiSequence(kitti06, count=3)
    for k in range(3):
        a, b = seq.frame(k), src.frame(k)
        gain_left = a.left.mean() / b.left.mean()
        assert abs(gain_left - a.right.mean() / b.right.mean()) < 0.03 * gain_left


def test_stretch_finds_the_scene_in_the_dark(kitti_frame):
    """SIFT's contrast threshold is absolute: in the dark variant (gamma 1.6, gain 0.18, noise
    3) a real frame keeps a fraction of its keypoints; after the level stretch (the default
    ``features.light``) it has most of them back (measured on KITTI 06 frame 0: clean 3668,
    dark 714, dark stretched 3165)."""
    sift = Sift(max_keypoints=4000)
    rng = np.random.default_rng(1)
    dark = change_light(kitti_frame, light_params('dark', 0, rng), rng)
    clean, raw = len(sift(kitti_frame)), len(sift(dark))
    stretched = len(sift(normalise_light([dark], 'stretch')[0]))
    assert stretched > 3 * raw and stretched > 0.4 * clean, (clean, raw, stretched)
    # a well exposed frame (its 1st-99th percentiles span more than 180 levels) is untouched,
    # and so is a black frame with sensor noise (no scene: stretching would make noise corners)
    assert np.array_equal(normalise_light([kitti_frame], 'stretch')[0], kitti_frame)
    black = np.clip(rng.normal(3, 1.5, kitti_frame.shape), 0, 255).astype(np.uint8)
    assert np.array_equal(normalise_light([black], 'stretch')[0], black)
    # one exposure: the right image is mapped with the left image's levels, not its own
    left, right = normalise_light([dark, dark // 2], 'stretch')
    assert np.array_equal(right, cv2.LUT(dark // 2, stretch_levels(dark)))
    assert not np.array_equal(right, normalise_light([dark // 2], 'stretch')[0])
    assert normalise_light([dark, None], 'clahe')[1] is None
    assert not np.array_equal(normalise_light([dark], 'clahe')[0], dark)
    with pytest.raises(ConfigError, match='features.light'):
        load_config(None, {'features.light': 'gamma'})


def test_the_front_end_validates_before_it_normalises(kitti06):
    """The light normalisation runs on validated images: a float pair in [0, 1] (accepted by
    check_image) still works, a 16-bit image is one ImageError (not an OpenCV error), the right
    one too, and so is a pair of two sizes, with or without normalisation (block matching takes
    the right image as it is)."""
    from hndesc_ros.errors import ImageError
    from hndesc_ros.vo.pipeline import StereoFrontend
    seq = KittiSequence(kitti06, count=1)
    fr = seq.frame(0)
    for light in ('stretch', 'none'):
        fe = StereoFrontend(seq.calib, load_config(None, {'features.extractor': 'rootsift',
                                                          'features.light': light,
                                                          'features.max_noise': 0.0}))
        try:
            pf = fe.extract(fr.left / 255.0 * 0.2, fr.right / 255.0 * 0.2)  # dim, float
            assert len(pf.left) > (500 if light == 'stretch' else 100)  # dim: fewer unstretched
            assert np.isfinite(fe.stereo(pf)).sum() > (100 if light == 'stretch' else 25)
            with pytest.raises(ImageError, match='16-bit'):
                fe.extract(fr.left.astype(np.uint16), fr.right)
            with pytest.raises(ImageError, match='right image'):
                fe.extract(fr.left, fr.right.astype(np.uint16))
            with pytest.raises(ImageError, match='sizes differ'):
                fe.extract(fr.left, fr.right[:, :-10])
        finally:
            fe.close()


def test_a_noisy_pair_is_blurred_down_to_max_noise(kitti_frame):
    """``features.max_noise``: the noise estimate follows noise added to a real frame (known
    sigma: the one synthetic ingredient), a clean frame is left alone (the same objects), and
    the stretched dark variant (noise about 15 levels) is blurred, both images alike, to about
    the limit (KITTI dark 06 / 01: 0.224 / 0.961 m without it, 0.037 / 0.376 m with it)."""
    from hndesc_ros.features.image import noise_sigma, suppress_noise
    rng = np.random.default_rng(2)
    base = noise_sigma(kitti_frame)
    assert base < 4.0, base  # a well exposed KITTI frame: texture reads as 2-3 levels
    noisy = np.clip(kitti_frame + rng.normal(0, 10, kitti_frame.shape), 0, 255).astype(np.uint8)
    assert abs(noise_sigma(noisy) - np.hypot(base, 10)) < 1.5, noise_sigma(noisy)
    pair = [kitti_frame, kitti_frame[::-1].copy()]
    out = suppress_noise(pair, 4.0)
    assert out[0] is pair[0] and out[1] is pair[1]
    dark = change_light(kitti_frame, light_params('dark', 0, rng), rng)
    stretched = normalise_light([dark], 'stretch')[0]
    assert noise_sigma(stretched) > 10
    left, right, none = suppress_noise([stretched, stretched.copy(), None], 4.0)
    assert none is None and np.array_equal(left, right)
    assert noise_sigma(left) < 4.0
    # on pure noise (exact truth: a flat grey with sigma 12) the blur leaves the limit's std
    flat = np.clip(128 + rng.normal(0, 12, (400, 600)), 0, 255).astype(np.uint8)
    assert abs(noise_sigma(flat) - 12) < 0.6
    assert abs(suppress_noise([flat], 4.0)[0][20:-20, 20:-20].std() - 4.0) < 0.6
    assert suppress_noise([stretched], 0.0)[0] is stretched  # 0: never
    with pytest.raises(ConfigError, match='features.max_noise'):
        load_config(None, {'features.max_noise': -1})


def test_klt_reobserves_a_noisy_pair_one_step_from_a_detection(tmp_path, kitti06, monkeypatch):
    """In a pair blurred against its noise KLT re-observes landmarks, but only from the last
    frames' detected keypoints (a pixel followed in noise carries its error on: a chain is a
    random walk), and scores what it followed apart (SCORE_FOLLOWED_NOISY), so that the
    back end keeps its right u out of the disparity offset. A clean pair chains as before."""
    from hndesc_ros.types import SCORE_FOLLOWED, SCORE_FOLLOWED_NOISY
    from hndesc_ros.vo.tracker import MapTracker
    seen = []
    track = MapTracker.track

    def spied(self, *args, **kwargs):
        obs = track(self, *args, **kwargs)
        followed = obs.scores <= SCORE_FOLLOWED
        sources = set(self._last[1].tolist()) if self._last is not None else set()
        seen.append((kwargs.get('noisy', False), set(obs.scores[followed].tolist()),
                     int(followed.sum()), sources <= set(obs.track_ids[~followed].tolist())))
        return obs

    monkeypatch.setattr(MapTracker, 'track', spied)
    dark = KittiSequence(write_variant(kitti06, tmp_path, list(range(12)), light='dark'))
    m = run_sequence(dark, load_config())['metrics']
    assert m['frames_tracked'] == 12 and len(seen) == 12
    assert all(noisy and from_detections for noisy, _, _, from_detections in seen)
    assert sum(n for _, _, n, _ in seen) > 100  # re-observations made
    assert set().union(*(s for _, s, _, _ in seen)) == {SCORE_FOLLOWED_NOISY}
    # and the run says why: every dark pair was stretched and blurred
    assert m['pairs_stretched'] == m['pairs_blurred'] == 12
    assert 'light: 12 pairs stretched, 12 blurred' in format_metrics(m)
    seen.clear()
    clean = run_sequence(KittiSequence(kitti06, count=12), load_config())['metrics']
    assert len(seen) >= 5  # the extracted frames (every other one on the CPU path)
    assert not any(noisy for noisy, _, _, _ in seen)
    assert set().union(*(s for _, s, _, _ in seen)) == {SCORE_FOLLOWED}
    assert not all(from_detections for _, _, _, from_detections in seen)  # chains
    assert clean['pairs_stretched'] == clean['pairs_blurred'] == 0
    assert 'light:' not in format_metrics(clean)


# ATE bounds (m) for issue #22's first bar, below ORB-SLAM3's on the same copies: its medians
# over six draws were 06 flicker 0.063, dark 0.085 (steps 0.084-0.100, blur 0.043); 01
# flicker 0.79, dark 0.67 m (bench/robustness.py, fourteenth session). hndesc's worst over
# the six draws: 06 0.037 (0.025 steps and blur), 01 0.331 m.
LIGHT_BOUNDS = {'06': 0.07, '01': 0.5}


@pytest.mark.parametrize('name,light', [('06', 'flicker'), ('06', 'dark'), ('06', 'steps'),
                                        ('06', 'blur'), ('01', 'flicker'), ('01', 'dark')])
def test_light_changed_copies_are_tracked_ahead_of_orbslam3(tmp_path, name, light):
    """Every frame of a whole light-changed copy (draw 0) is tracked, by the default config,
    within the bound above. Without the stretch (``features.light: none``) today's engine
    loses 6 frames of dark 06 (0.186 m) and 27 of dark 01 (1.02 m)."""
    from conftest import shared_path
    src = shared_path('kitti', 'sequences', name)
    seq = KittiSequence(write_variant(src, tmp_path, list(range(len(KittiSequence(src)))),
                                      seed=0, light=light))
    m = run_sequence(seq, load_config())['metrics']
    assert m['frames_tracked'] == m['frames'] == len(seq)
    assert m['ate_rmse_m'] < LIGHT_BOUNDS[name], m['ate_rmse_m']
    # dark 06 restarted its window near the end before the smoother's QR re-elimination
    assert m['smoother_resets'] == 0
