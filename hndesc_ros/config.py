"""One configuration schema for the library, the CLI and the ROS nodes.

The same snake_case keys appear as dataclass fields, in YAML files (nested by section) and as
ROS 2 parameters (``section.key``). :func:`load_config` reads YAML (plain, or a ROS params file
with ``ros__parameters``), :func:`validate` rejects bad values naming the key.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import yaml

from hndesc_ros.errors import ConfigError

# The choices of the schema and of the command line (one place: config.py and the CLI use these)
EXTRACTORS = ('residual', 'cnn', 'residual-small', 'sift', 'rootsift')
BACKENDS = ('auto', 'torch', 'onnxruntime', 'tensorrt')
KEYPOINTS = ('sift', 'learned')
STEREO_METHODS = ('block', 'sift', 'descriptor', 'klt')
TRAJECTORY_FORMATS = ('kitti', 'tum')   # trajectory files (hndesc_ros.datasets.poses)
ALIGNMENTS = ('se3', 'sim3', 'none')    # trajectory alignment (hndesc_ros.eval.trajectory)
BAG_STORAGES = ('mcap', 'sqlite3')      # ROS 2 bag storage plugins (hndesc_ros.datasets.bags)
# light changes of a variant (hndesc_ros.datasets.variants)
LIGHT_CHANGES = ('flicker', 'dark', 'steps', 'blur', 'grain', 'noise')
LIGHT_NORMALISATIONS = ('none', 'stretch', 'clahe')  # features.light (features/image.py)


@dataclass
class FeatureConfig:
    """Keypoints and descriptors."""

    extractor: str = 'residual-small'  # residual | cnn | residual-small | sift | rootsift
    keypoints: str = 'sift'            # sift | learned (detector head)
    backend: str = 'auto'              # auto | torch | onnxruntime | tensorrt
    weights: str = ''                  # checkpoint/ONNX/engine path; '' = the shipped model
    device: str = 'cpu'                # torch device for the torch backend
    fp16: bool = False                 # half precision (torch CUDA / TensorRT)
    int8: bool = True                  # onnxruntime: the shipped int8 twin, where one exists
    max_keypoints: int = 2000
    contrast_threshold: float = 0.005  # SIFT DoG peak threshold, image units (paper: 0.005)
    edge_threshold: float = 10.0
    upright: bool = False              # SIFT orientation fixed to 0
    root_sift: bool = True             # Hellinger-normalised SIFT (also the input of f)
    nms_radius: int = 4                # learned keypoints: NMS radius in pixels
    detection_threshold: float = 0.005  # learned keypoints: score threshold
    border: int = 8                    # learned keypoints: ignore this many border pixels
    num_threads: int = 1               # threads of each torch / onnxruntime / OpenCV call
    sift_upsample: bool = False        # SIFT's 2x-upsampled first octave (4x the cost)
    sift_pixels: int = 75000           # stereo: SIFT on about this many pixels whatever the
    #                                    camera (cost goes with them; a small camera at up to
    #                                    its full size); 0 = half size
    sift_min_pixels: int = 100000      # SIFT at half size (sift_pixels 0; mono) on a camera
    #                                    whose half is smaller: about this many pixels instead
    #                                    (up to its full size; KITTI's half: 113,000+); 0 = off
    parallel: bool = True              # SIFT || network, and left || right, in two threads
    network_scale: float = 0.4         # network input scale (learned keypoints: at least 0.75)
    network_pixels: int = 75000        # SIFT keypoints: the network sees at most about this many
    #                                    pixels (a bigger camera: a smaller scale); 0 = no cap
    light: str = 'stretch'             # VO front end: none | stretch (a dim image) | clahe
    max_noise: float = 4.0             # VO front end: grey levels of noise (after light) above
    #                                    which a pair is blurred down to it; 0 = never

    def at_full_resolution(self) -> 'FeatureConfig':
        """This config with OpenCV's standard SIFT (2x-upsampled first octave) and the network
        at full size: the setting of the descriptor benchmarks (HPatches protocol), as opposed
        to the real-time VO defaults."""
        return dataclasses.replace(self, sift_upsample=True, network_scale=1.0,
                                   network_pixels=0)


@dataclass
class MatchingConfig:
    """Descriptor matching (mutual NN + ratio test) and the stereo row constraint."""

    ratio: float = 0.95                # Lowe ratio on distances; 1.0 disables
    max_distance: float = 1.2          # on L2 distance of unit descriptors; 2.0 disables
    stereo_max_row_diff: float = 1.5   # px, rectified images
    stereo_min_disparity: float = 0.5  # px
    stereo_max_disparity: float = 250.0
    stereo_method: str = 'block'       # block (no right features) | sift | descriptor | klt
    stereo_pixels: int = 120000        # block: matched on about this many pixels
    stereo_range: float = 0.2          # block: disparities searched, share of the image width
    block_size: int = 11               # px, block: SAD window at that scale (odd, 5-51)
    klt_window: int = 11               # px, KLT patch size (stereo_method klt)


@dataclass
class VOConfig:
    """Stereo VO front end and GTSAM back end."""

    mono: bool = False
    min_depth: float = 0.5             # m
    max_depth: float = 80.0            # m; points beyond are not used for PnP
    disparity_offset: float = 0.0      # px the rectification shifts disparities by (known)
    estimate_disparity_offset: bool = True  # estimate it from motion, from that value
    pnp_reprojection_px: float = 1.5
    pnp_iterations: int = 300
    min_inliers: int = 15              # below: tracking lost, re-initialise
    pixel_sigma: float = 1.0           # projection factor noise (px) of the finest keypoints
    huber_k: float = 1.345             # robust kernel width (in sigmas)
    window_size: int = 8               # keyframes in the fixed-lag window
    keyframe_min_translation: float = 3.0  # m since the last keyframe; 0 = every frame
    keyframe_min_rotation: float = 5.0  # deg since the last keyframe
    keyframe_parallax_deg: float = 2.0  # deg of parallax (at the median depth) per keyframe
    #                                    (translation since the last keyframe over the
    #                                    tracked landmarks' median depth)
    keyframe_max_interval: int = 4     # frames; a keyframe at least this often
    klt_keyframes: bool = False        # true: a KLT pair may be a keyframe by parallax too
    #                                    (false: only by the interval, a turn or weak
    #                                    tracking; its few projection factors cost accuracy
    #                                    and shorten the window in time)
    keyframe_track_ratio: float = 0.45  # keyframe when fewer of its tracked landmarks remain
    keyframe_min_tracks: int = 100     # keyframe when fewer PnP inliers
    smoother: bool = True              # False: tracking only (no GTSAM mapping)
    async_mapping: bool = False        # True: mapper in a background process (see README)
    share_map: bool = True             # refined landmarks go back to the tracker's local map
    pipelined: bool = True             # next pairs extracted while this one is tracked
    prefetch: int = 4                  # pairs read and extracted ahead of the tracker
    #                                    (vo.pipelined; one whole KLT cycle of a 20 Hz camera)
    min_track_length: int = 3          # stereo observations before a landmark enters the graph
    stereo_gate_px: float = 3.0        # max reprojection error of a track's point (px, finest)
    smoother_iterations: int = 0       # extra iSAM2 relinearisation steps per keyframe
    max_new_landmarks: int = 100       # cap on landmarks entering the window a keyframe (0: none)
    search_radius_deg: float = 1.1954  # deg, local-map search window around the prediction
    #                                    (15 px at KITTI 00-02's 718.9 px focal length, the
    #                                    window in px before; 9.6 px at 458 px)
    refine_radius_deg: float = 0.3188  # deg, second search window at the PnP pose (4 px at
    #                                    718.9 px)
    refine_landmarks: bool = True      # every kept observation refines its landmark's point
    map_max_age: int = 10              # frames a local-map landmark survives unseen
    klt_frames: int = 1                # stereo: frames tracked by KLT alone between extracted ones
    #                                    (no features, stereo or new landmarks; a keyframe
    #                                    gets projection factors); 0 = every pair extracted
    klt_rate_hz: float = 10.0          # the camera rate klt_frames is counted at: a pair is
    #                                    extracted once (klt_frames + 1) / klt_rate_hz s have
    #                                    passed (a 20 Hz camera: every 4th pair); 0 = count
    #                                    pairs whatever the rate
    klt_reobserve: bool = True         # landmarks seen in the last two frames but not
    #                                    re-detected are followed into this one by KLT
    #                                    (in a pair blurred for noise, max_noise, only
    #                                    one step from a detection: no KLT chains)
    klt_max_landmarks: int = 600       # most landmarks KLT follows into a frame
    #                                    (the most observed first; with klt_reobserve the
    #                                    matched ones count too)
    mono_window: int = 10              # frames in the monocular fixed-lag bundle adjustment
    mono_min_parallax: float = 2.0     # deg between a mono track's first and last ray
    still_parallax: float = 0.02       # deg of parallax below which the camera stands still
    #                                    (mono: no translation; stereo: no new keyframe)


@dataclass
class RosConfig:
    """ROS 2 node settings (used only by hndesc_ros.ros)."""

    odom_frame: str = 'odom'
    base_frame: str = 'base_link'
    # base_link -> camera optical frame: x y z qx qy qz qw (REP-103 optical rotation default)
    base_to_camera: Tuple[float, ...] = (0.0, 0.0, 0.0, -0.5, 0.5, -0.5, 0.5)
    reliable: bool = False             # True for bag replay; default SensorDataQoS (best effort)
    drop_stale: bool = True            # latest stereo pair wins while one is processed (live);
    #                                    False: every pair in order (exact bag replay)
    sync_tolerance: float = 0.0        # s; 0 = exact stamp pairing
    publish_tf: bool = True
    queue_size: int = 10
    path_length: int = 10000           # poses kept in nav_msgs/Path (oldest go); 0 = all


@dataclass
class Config:
    """The whole configuration."""

    features: FeatureConfig = field(default_factory=FeatureConfig)
    matching: MatchingConfig = field(default_factory=MatchingConfig)
    vo: VOConfig = field(default_factory=VOConfig)
    ros: RosConfig = field(default_factory=RosConfig)


def frontend_features(cfg: Config) -> FeatureConfig:
    """The feature settings the VO front end runs with: ``cfg.features``, except that in mono
    (``vo.mono``) SIFT stays at half size whatever ``features.sift_pixels`` says. The budget is
    for stereo, whose depth comes from the pair; mono's motion and landmarks rest on its
    keypoints alone (KITTI 00 with GT scale: 0.079 m at half size, 0.109 m at 75,000 px). A
    camera whose half is under ``features.sift_min_pixels`` gets about that many instead
    (half-size KITTI 00, five keypoint orders: 0.145 m mean at its half, 0.111 m at 100,000
    px)."""
    return dataclasses.replace(cfg.features, sift_pixels=0) if cfg.vo.mono else cfg.features


#: Repeatable bag replay (``hndesc-vo run --exact``, ``vo.launch.py exact:=true``): reliable
#: inputs, every pair processed in order, and no landmark feedback (it reaches the front end
#: whenever DDS delivers it): the poses of the offline run with ``vo.share_map: false``.
EXACT_REPLAY = {'ros.reliable': True, 'ros.drop_stale': False, 'vo.share_map': False}

_CHOICES = {
    'matching.stereo_method': STEREO_METHODS,
    'features.extractor': EXTRACTORS,
    'features.backend': BACKENDS,
    'features.keypoints': KEYPOINTS,
    'features.light': LIGHT_NORMALISATIONS,
}
_POSITIVE = {
    'features.max_keypoints', 'features.num_threads', 'vo.pnp_iterations', 'vo.window_size',
    'vo.pixel_sigma', 'vo.huber_k', 'vo.max_depth', 'vo.pnp_reprojection_px',
    'matching.stereo_max_disparity', 'matching.stereo_pixels', 'ros.queue_size',
    'vo.min_track_length', 'vo.stereo_gate_px',
    'vo.search_radius_deg', 'vo.refine_radius_deg', 'vo.map_max_age', 'vo.keyframe_max_interval',
    'matching.klt_window', 'vo.mono_window', 'vo.prefetch', 'vo.klt_max_landmarks',
    'vo.keyframe_parallax_deg',
}


def iter_params(cfg: Config) -> Iterator[Tuple[str, Any]]:
    """Yield ``('section.key', value)`` for every leaf of the config, in schema order."""
    for sec in fields(cfg):
        sub = getattr(cfg, sec.name)
        for f in fields(sub):
            yield f'{sec.name}.{f.name}', getattr(sub, f.name)


def field_comment(dotted: str) -> str:
    """Return the one-line description of a config key (from the schema's source comments)."""
    return _read_descriptions().get(dotted, dotted)


def set_param(cfg: Config, dotted: str, value: Any) -> None:
    """Set ``section.key`` on ``cfg``, coercing to the field's type; raises ConfigError."""
    try:
        sec, key = dotted.split('.', 1)
        sub = getattr(cfg, sec)
        current = getattr(sub, key)
    except (ValueError, AttributeError):
        raise ConfigError(f'unknown config key {dotted!r}') from None
    setattr(sub, key, _coerce(dotted, current, value))


def _coerce(dotted: str, current: Any, value: Any) -> Any:
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                if value.lower() in ('true', '1', 'yes'):
                    return True
                if value.lower() in ('false', '0', 'no'):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(current, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if isinstance(current, float):
            return float(value)
        if isinstance(current, tuple):
            return tuple(float(v) for v in value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f'{dotted}: expected {type(current).__name__}, got {value!r}') from None


def validate(cfg: Config) -> Config:
    """Check ranges and choices; raise ConfigError naming the first bad key."""
    for key, value in iter_params(cfg):
        if key in _CHOICES and value not in _CHOICES[key]:
            raise ConfigError(f'{key}: {value!r} is not one of {", ".join(_CHOICES[key])}')
        if key in _POSITIVE and not value > 0:
            raise ConfigError(f'{key}: must be > 0, got {value!r}')
    m = cfg.matching
    if not 0.0 < m.ratio <= 1.0:
        raise ConfigError(f'matching.ratio: must be in (0, 1], got {m.ratio!r}')
    if not 0.0 < m.stereo_range <= 0.5:
        raise ConfigError(f'matching.stereo_range: must be in (0, 0.5], got {m.stereo_range!r}')
    if not (5 <= m.block_size <= 51 and m.block_size % 2 == 1):
        raise ConfigError(f'matching.block_size: must be odd, 5 to 51, got {m.block_size!r}')
    if m.stereo_min_disparity >= m.stereo_max_disparity:
        raise ConfigError('matching.stereo_min_disparity: must be < stereo_max_disparity')
    if cfg.vo.min_depth >= cfg.vo.max_depth:
        raise ConfigError('vo.min_depth: must be < vo.max_depth')
    if cfg.vo.mono_window < cfg.vo.min_track_length:
        raise ConfigError('vo.mono_window: must be >= vo.min_track_length (no mono landmark '
                          'could be made)')
    if len(cfg.ros.base_to_camera) != 7:
        raise ConfigError('ros.base_to_camera: expected 7 numbers x y z qx qy qz qw')
    if not 0.1 <= cfg.features.network_scale <= 1.0:
        raise ConfigError('features.network_scale: must be in [0.1, 1]')
    if cfg.vo.still_parallax < 0:
        raise ConfigError('vo.still_parallax: must be >= 0 (0: never standing still)')
    if cfg.features.contrast_threshold < 0:
        raise ConfigError('features.contrast_threshold: must be >= 0')
    if cfg.vo.klt_max_landmarks < cfg.vo.min_inliers:
        raise ConfigError('vo.klt_max_landmarks: must be >= vo.min_inliers (KLT could never '
                          'track a frame)')
    if cfg.vo.max_new_landmarks < 0:
        raise ConfigError('vo.max_new_landmarks: must be >= 0 (0: no cap)')
    if cfg.vo.klt_frames < 0:
        raise ConfigError('vo.klt_frames: must be >= 0 (0: every pair extracted)')
    for key in ('search_radius_deg', 'refine_radius_deg'):
        if getattr(cfg.vo, key) >= 45:
            raise ConfigError(f'vo.{key}: must be < 45 (an angle in degrees)')
    if cfg.vo.klt_rate_hz < 0:
        raise ConfigError('vo.klt_rate_hz: must be >= 0 (0: klt_frames counts pairs)')
    if cfg.features.network_pixels < 0:
        raise ConfigError('features.network_pixels: must be >= 0 (0: no cap)')
    if cfg.features.sift_pixels < 0:
        raise ConfigError('features.sift_pixels: must be >= 0 (0: half size)')
    if cfg.features.sift_min_pixels < 0:
        raise ConfigError('features.sift_min_pixels: must be >= 0 (0: half size whatever '
                          'the camera)')
    if cfg.features.max_noise < 0:
        raise ConfigError('features.max_noise: must be >= 0 (0: never blur)')
    return cfg


def from_dict(data: Dict[str, Any], cfg: Config | None = None) -> Config:
    """Build a Config from a nested dict (``{'features': {...}}``) or dotted keys."""
    cfg = cfg or Config()
    for key, value in _flatten(data or {}):
        set_param(cfg, key, value)
    return validate(cfg)


def to_dict(cfg: Config) -> Dict[str, Any]:
    """Nested plain-dict form (YAML-ready)."""
    out = dataclasses.asdict(cfg)
    out['ros']['base_to_camera'] = list(cfg.ros.base_to_camera)
    return out


def parse_overrides(items) -> Dict[str, str]:
    """``['vo.share_map=false', ...]`` (command-line ``--set``) -> dotted-key overrides for
    :func:`load_config`; ConfigError for an item without ``=``."""
    out = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key.strip():
            raise ConfigError(f'--set {item!r}: expected KEY=VALUE, e.g. vo.share_map=false')
        out[key.strip()] = value.strip()
    return out


def load_config(path: str | Path | None = None, overrides: Dict[str, Any] | None = None,
                node: str | None = None) -> Config:
    """Load defaults, then a YAML file, then ``overrides`` (dotted keys).

    The YAML may be plain (``features: {max_keypoints: 1000}``) or a ROS 2 params file
    (``node_name: {ros__parameters: {...}}``); for the latter every node's parameters are
    merged, ``node``'s last.
    """
    cfg = Config()
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f'cannot read config {path}: {exc}') from None
        if not isinstance(data, dict):
            raise ConfigError(f'config {path}: expected a mapping at the top level')
        if any(isinstance(v, dict) and 'ros__parameters' in v for v in data.values()):
            names = sorted(data, key=lambda n: n == node)
            for name in names:
                from_dict(data[name].get('ros__parameters', {}), cfg)
        else:
            from_dict(data, cfg)
    if overrides:
        from_dict(overrides, cfg)
    return validate(cfg)


def _flatten(data: Dict[str, Any], prefix: str = '') -> Iterator[Tuple[str, Any]]:
    for key, value in data.items():
        dotted = f'{prefix}{key}'
        if isinstance(value, dict):
            yield from _flatten(value, dotted + '.')
        else:
            yield dotted, value


@functools.lru_cache(maxsize=1)
def _read_descriptions() -> Dict[str, str]:
    """Parse the trailing comments of this module's dataclass fields into descriptions."""
    import inspect
    out: Dict[str, str] = {}
    for sec_name, cls in (('features', FeatureConfig), ('matching', MatchingConfig),
                          ('vo', VOConfig), ('ros', RosConfig)):
        for line in inspect.getsource(cls).splitlines():
            line = line.strip()
            if ':' in line and '#' in line and not line.startswith('#'):
                name = line.split(':', 1)[0].strip()
                out[f'{sec_name}.{name}'] = line.split('#', 1)[1].strip()
    return out


def package_file(*parts: str) -> Path:
    """A file of the package's ``config/`` (or ``launch/``...) folder: from the source tree, or
    from ``share/hndesc_ros`` when installed by colcon; ConfigError if neither has it."""
    candidates = [Path(__file__).resolve().parent.parent.joinpath(*parts)]
    try:
        from ament_index_python.packages import get_package_share_directory
        candidates.append(Path(get_package_share_directory('hndesc_ros')).joinpath(*parts))
    except Exception:  # not installed through colcon / no ament index: source tree only
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise ConfigError(f'{"/".join(parts)} not found in the source tree or share/hndesc_ros')
