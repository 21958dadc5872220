"""Config schema: defaults, YAML (plain and ROS params), validation naming the key."""
import pytest

from hndesc_ros.config import Config, iter_params, load_config
from hndesc_ros.errors import ConfigError


def test_defaults_are_valid_and_flat_keys_are_snake_case():
    keys = [k for k, _ in iter_params(Config())]
    assert 'features.max_keypoints' in keys and 'vo.window_size' in keys
    assert all(k == k.lower() for k in keys)


def test_plain_and_ros_yaml(tmp_path):
    plain = tmp_path / 'a.yaml'
    plain.write_text('features:\n  max_keypoints: 500\nvo:\n  window_size: 4\n')
    cfg = load_config(plain)
    assert cfg.features.max_keypoints == 500 and cfg.vo.window_size == 4
    ros = tmp_path / 'b.yaml'
    ros.write_text('frontend_node:\n  ros__parameters:\n    features:\n      extractor: cnn\n'
                   'backend_node:\n  ros__parameters:\n    vo.pixel_sigma: 2.0\n')
    cfg = load_config(ros)
    assert cfg.features.extractor == 'cnn' and cfg.vo.pixel_sigma == 2.0


@pytest.mark.parametrize('key,value', [('features.extractor', 'orb'),
                                       ('features.max_keypoints', 0),
                                       ('matching.ratio', 1.5),
                                       ('vo.window_size', 'many'),
                                       ('vo.prefetch', 0),
                                       ('vo.search_radius_deg', 0),
                                       ('vo.refine_radius_deg', 60),
                                       ('vo.search_radius_px', 15),
                                       ('nope.key', 1)])
def test_invalid_values_name_the_key(key, value):
    with pytest.raises(ConfigError, match=key.split('.')[0]):
        load_config(None, {key: value})


@pytest.mark.parametrize('key,value', [('matching.stereo_method', 'bm'),
                                       ('matching.stereo_pixels', 0),
                                       ('matching.stereo_range', 0.0),
                                       ('matching.stereo_range', 0.6),
                                       ('matching.block_size', 10),
                                       ('matching.block_size', 3),
                                       ('matching.block_size', 53)])
def test_block_stereo_settings_are_checked_by_name(key, value):
    with pytest.raises(ConfigError, match=key):
        load_config(None, {key: value})


@pytest.mark.parametrize('key', ['vo.klt_frames', 'vo.klt_rate_hz', 'features.network_pixels',
                                 'features.sift_pixels', 'features.sift_min_pixels'])
def test_negative_counts_are_refused_by_name(key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, {key: -1})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_mono_window_shorter_than_a_track_is_refused():
    with pytest.raises(ConfigError, match='vo.mono_window'):
        load_config(None, {'vo.mono_window': 2, 'vo.min_track_length': 3})
