"""Videos (and animated images): probe without decoding, plan the frames to sample, decode only those.

``probe`` reads frame timestamps and keyframes (from an MP4/MOV header's sample table via ``mp4_index``,
else by demuxing), ``decode`` turns the planned indices into frames.
"""

from workers.media.video.decode import SampledFrame, prefetched, sample_frames
from workers.media.video.probe import (
    SeekPoint,
    VideoInfo,
    plan_indices_at_rate,
    plan_sample_indices,
    plan_seeks,
    probe_video,
)

__all__ = [
    "SampledFrame",
    "SeekPoint",
    "VideoInfo",
    "plan_indices_at_rate",
    "plan_sample_indices",
    "plan_seeks",
    "prefetched",
    "probe_video",
    "sample_frames",
]
