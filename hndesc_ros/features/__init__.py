"""Keypoints, descriptors and matching."""
from hndesc_ros.features.extractor import Extractor, prepare_input
from hndesc_ros.features.image import check_image, read_image, to_gray
from hndesc_ros.features.matching import match_numpy, match_stereo, match_torch
from hndesc_ros.features.sift import Sift, root_sift

__all__ = ['Extractor', 'Sift', 'check_image', 'match_numpy', 'match_stereo', 'match_torch',
           'prepare_input', 'read_image', 'root_sift', 'to_gray']
