"""Streaming video, image and mask I/O (no torch).

* :func:`open_source` -> :class:`FrameSource` of :class:`Frame` (webcam, video file, image folder,
  URL, GStreamer pipeline);
* :func:`open_masks` -> :class:`MaskSource` (mask folder or first-frame mask);
* :func:`read_image`, :func:`read_alpha`, :func:`write_alpha_png`, :class:`AlphaPngWriter`,
  :class:`VideoWriter`, :func:`open_alpha_sink`.
"""
from mamakit.io.images import (
    IMAGE_EXTS,
    list_images,
    natural_key,
    read_alpha,
    read_image,
    write_alpha_png,
    write_image,
)
from mamakit.io.masks import MaskSource, open_masks, read_mask, resize_mask
from mamakit.io.sources import (
    VIDEO_EXTS,
    Frame,
    FrameSource,
    GStreamerSource,
    ImageFileSource,
    ImageFolderSource,
    UrlSource,
    VideoFileSource,
    WebcamSource,
    gstreamer_available,
    open_source,
    read_video_rgba,
    video_has_alpha,
)
from mamakit.io.writers import ALPHA_VIDEO_EXTS, VIDEO_FORMATS, AlphaPngWriter, AlphaVideoSink, VideoWriter, open_alpha_sink

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "VIDEO_FORMATS", "ALPHA_VIDEO_EXTS",
    "Frame", "FrameSource", "ImageFolderSource", "ImageFileSource", "VideoFileSource", "UrlSource",
    "WebcamSource", "GStreamerSource", "open_source", "read_video_rgba", "video_has_alpha", "gstreamer_available",
    "MaskSource", "open_masks", "read_mask", "resize_mask",
    "read_image", "read_alpha", "write_alpha_png", "write_image", "list_images", "natural_key",
    "AlphaPngWriter", "VideoWriter", "AlphaVideoSink", "open_alpha_sink",
]
