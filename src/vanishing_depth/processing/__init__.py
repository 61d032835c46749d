"""Processing: the image processor, real sensor depth file formats, and the depth randomisation of pretraining."""

from ..image_processing_vanishing_depth import VanishingDepthImageProcessor, depth_to_metres
from .depth_io import DEPTH_FORMATS, decode_depth_array, encode_depth, load_depth, save_depth

__all__ = [
    "DEPTH_FORMATS",
    "VanishingDepthImageProcessor",
    "decode_depth_array",
    "depth_to_metres",
    "encode_depth",
    "load_depth",
    "save_depth",
]
