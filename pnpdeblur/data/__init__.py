"""Data: motion-flow synthesis, video (frame-averaging) synthesis, datasets, sample images.

Nothing here downloads anything: sample images come from scikit-image's bundled data,
datasets are read from folders the user points to.
"""
from .flows import (
    FLOW_PRESETS,
    CameraMotion,
    canonicalize_flow,
    random_motion_flow,
    random_motion_flows,
    sample_camera_motion,
)
from .image_files import HEIF_EXTENSIONS, IMAGE_EXTENSIONS, RAW_EXTENSIONS, exif_orientation, list_images, read_image
from .augment import PairAugment
from .datasets import (
    BlurredFolderDataset,
    GoProDataset,
    KohlerDataset,
    PairedFolderDataset,
    SyntheticBlurDataset,
    SyntheticVideoDataset,
)
from .blur_files import read_flow, read_kernel
from .samples import sample_image, sample_images
from .shake import random_shake_kernel
from .synthetic import FlowBlurSample, synthesize_flow_blur
from .video import (
    MOTION_KINDS,
    CameraPath,
    VideoBlurSample,
    VideoSequenceSample,
    average_frames,
    random_camera_path,
    render_frames,
    synthesize_video_blur,
    synthesize_video_sequence,
)

__all__ = [
    "FLOW_PRESETS",
    "CameraMotion",
    "canonicalize_flow",
    "random_motion_flow",
    "random_motion_flows",
    "sample_camera_motion",
    "random_shake_kernel",
    "sample_image",
    "sample_images",
    "MOTION_KINDS",
    "CameraPath",
    "VideoBlurSample",
    "average_frames",
    "random_camera_path",
    "render_frames",
    "synthesize_video_blur",
    "VideoSequenceSample",
    "synthesize_video_sequence",
    "FlowBlurSample",
    "synthesize_flow_blur",
    "IMAGE_EXTENSIONS",
    "RAW_EXTENSIONS",
    "HEIF_EXTENSIONS",
    "exif_orientation",
    "read_image",
    "read_kernel",
    "read_flow",
    "list_images",
    "PairAugment",
    "SyntheticBlurDataset",
    "SyntheticVideoDataset",
    "GoProDataset",
    "KohlerDataset",
    "PairedFolderDataset",
    "BlurredFolderDataset",
]
