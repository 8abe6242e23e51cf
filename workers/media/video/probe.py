"""Probe a video without decoding it, and plan which frames to decode and where to seek.

Frame indices are positions in presentation order, counted from the packet timestamps of the
whole stream; a decoded frame is matched to its index by its timestamp, so indices stay exact
after seeks and with B-frames.

The probe reads those timestamps from the header when it holds a complete sample table (MP4/MOV,
see ``mp4_index``); any other file, or any disagreement with the packets, is demuxed packet by
packet instead. Either way the probe gives the same timestamps and keyframes.
"""

from __future__ import annotations

import bisect
import math
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import av.error
import numpy as np

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from workers.media.errors import failure_reason
from workers.media.video.mp4_index import IndexedTimes, NotIndexed, indexed_times

# Animated images: each frame may cover the whole canvas, and all frames before a wanted one must be decoded
# (only the first is a keyframe), so frames x canvas area bounds their work.
_ANIMATION_CODECS = frozenset({"gif", "apng", "webp"})


@dataclass(frozen=True, eq=False)
class VideoInfo:
    duration_s: float
    fps: float
    width: int
    height: int
    frame_count: int
    keyframe_indices: tuple[int, ...]
    # Presentation timestamps of every frame, sorted, in units of ``time_base``; index i is frame i.
    frame_pts: np.ndarray = field(repr=False)
    time_base: Fraction = field(repr=False)
    # The probe's still open container, for the first sample_frames call to reuse instead of opening the file again.
    _probed: _ProbedContainer | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self._probed is not None:
            weakref.finalize(self, self._probed.close)  # closed with the info unless a sampler took it over

    def open_at_start(self, path: Path) -> av.container.InputContainer:
        """The probe's container back at the first frame if it was kept (and can seek there), else the file anew."""
        probed = self._probed.take(path) if self._probed is not None else None
        if probed is not None:
            try:
                probed.seek(int(self.frame_pts[0]), stream=video_stream(probed), backward=True)
            except av.error.FFmpegError:
                probed.close()
            else:
                return probed
        return open_container(path)


class _ProbedContainer:
    """An open container handed over once, from the probe to a sampler of the same file."""

    def __init__(self, path: Path, container: av.container.InputContainer) -> None:
        self._path = str(path)
        self._container: av.container.InputContainer | None = container
        self._lock = threading.Lock()

    def take(self, path: Path) -> av.container.InputContainer | None:
        with self._lock:
            container, self._container = self._container, None
        if container is not None and self._path != str(path):
            container.close()
            return None
        return container

    def close(self) -> None:
        with self._lock:
            container, self._container = self._container, None
        if container is not None:
            container.close()


class SeekPoint(NamedTuple):
    keyframe: int  # index of the keyframe to jump to
    target: int  # the wanted frame the jump is for


def probe_video(path: Path, settings: Settings) -> VideoInfo:
    """Frame count, keyframes, size and duration, from the container's index or packets without decoding any.

    When the header's index served, the open container is kept for the first ``sample_frames`` of this info
    (closed when the info goes away otherwise); a demuxed container is at its end and is closed.
    """
    container = open_container(path)
    try:
        stream = video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        check_side(width, height, settings.max_video_side)
        time_base = stream.time_base or Fraction(1, 1)
        average_rate = stream.average_rate
        indexed = indexed_times(path, container, stream, settings)
        probed = None
        if isinstance(indexed, IndexedTimes):
            frame_pts, keyframe_pts = _checked_timestamps(indexed, time_base, settings)
            probed = _ProbedContainer(path, container)
        elif indexed is NotIndexed.MISMATCH:
            with open_container(path) as fresh:  # the check moved the first one
                frame_pts, keyframe_pts = _demux_timestamps(fresh, video_stream(fresh), time_base, settings)
        else:
            frame_pts, keyframe_pts = _demux_timestamps(container, stream, time_base, settings)
        if len(frame_pts) == 0:
            raise TaskError(ErrorCode.NO_FRAMES, "the video stream has no frames")
        if stream.codec_context.name in _ANIMATION_CODECS:
            _check_animation_pixels(len(frame_pts), width, height, settings.max_animation_pixels)
        pts = np.sort(np.asarray(frame_pts, dtype=np.int64))
        span_s = float((int(pts[-1]) - int(pts[0])) * time_base)
        fps = float(average_rate) if average_rate else ((len(pts) - 1) / span_s if span_s > 0 else 0.0)
        duration_s = span_s + (1.0 / fps if fps > 0 else 0.0)
        if duration_s > settings.max_video_seconds:
            raise _too_long(duration_s, settings.max_video_seconds)
        info = VideoInfo(
            duration_s=duration_s,
            fps=fps,
            width=width,
            height=height,
            frame_count=len(pts),
            keyframe_indices=tuple(sorted(set(np.searchsorted(pts, np.asarray(keyframe_pts, np.int64)).tolist()))),
            frame_pts=pts,
            time_base=time_base,
            _probed=probed,
        )
    except BaseException:
        container.close()
        raise
    if probed is None:
        container.close()
    return info


def plan_sample_indices(frame_count: int, num_frames: int) -> list[int]:
    """``num_frames`` evenly spaced indices starting at 0; every frame once when there are fewer."""
    return sorted({i * frame_count // num_frames for i in range(num_frames)}) if num_frames > 0 else []


def plan_indices_at_rate(frame_count: int, fps: float, sample_fps: float, limit: int) -> list[int]:
    """One frame every 1/sample_fps seconds from the start, at most ``limit`` of them."""
    step = fps / sample_fps
    count = min(limit, math.ceil(frame_count / step))
    return sorted({min(frame_count - 1, round(i * step)) for i in range(count)})


def plan_seeks(keyframe_indices: Sequence[int], wanted: Sequence[int], penalty: int) -> list[SeekPoint]:
    """Where to jump instead of decoding through: before a wanted frame whose nearest preceding
    keyframe lies more than ``penalty`` frames past the decoder's position.

    With a single keyframe (or keyframes denser than the samples) this is empty: pure sequential decode.
    """
    seeks: list[SeekPoint] = []
    position = 0  # index of the next frame the decoder would produce
    for target in sorted(set(wanted)):
        keyframe = keyframe_at_or_before(keyframe_indices, target)
        if keyframe - position > penalty:
            seeks.append(SeekPoint(keyframe=keyframe, target=target))
        position = target + 1
    return seeks


def keyframe_at_or_before(keyframe_indices: Sequence[int], index: int) -> int:
    position = bisect.bisect_right(keyframe_indices, index)
    return keyframe_indices[position - 1] if position else 0


def open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.EOFError as exc:
        # E.g. Matroska/WebM written with a header and no clusters.
        raise TaskError(ErrorCode.NO_FRAMES, "the file ends before any media data") from exc
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise  # missing or unreadable file: the caller's problem, not bad media
        raise TaskError(ErrorCode.CORRUPT_MEDIA, f"not a readable video container: {failure_reason(exc)}") from exc


def video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first real video stream; cover art ("attached pictures") does not count."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "none"
    raise TaskError(ErrorCode.NO_FRAMES, f"no video stream (streams found: {kinds})")


def check_side(width: int, height: int, max_side: int) -> None:
    if max(width, height) > max_side:
        raise TaskError(
            ErrorCode.MEDIA_LIMIT_EXCEEDED, f"video is {width}x{height}, the limit is {max_side} pixels per side"
        )


def _check_animation_pixels(frame_count: int, width: int, height: int, max_pixels: int) -> None:
    pixels = frame_count * width * height
    if pixels > max_pixels:
        raise TaskError(
            ErrorCode.MEDIA_LIMIT_EXCEEDED,
            f"animation has {frame_count} frames of {width}x{height} = {pixels} pixels, the limit is {max_pixels}",
        )


def _demux_timestamps(
    container: av.container.InputContainer, stream: av.VideoStream, time_base: Fraction, settings: Settings
) -> tuple[list[int], list[int]]:
    """Presentation timestamps of all frames and of the keyframes, stopping early once over a limit."""
    max_seconds = settings.max_video_seconds
    max_span = max_seconds / time_base
    frame_pts: list[int] = []
    keyframe_pts: list[int] = []
    try:
        for packet in container.demux(stream):
            timestamp = packet.pts if packet.pts is not None else packet.dts
            # Empty packets flush the decoder; discarded ones (edit lists) are never shown.
            if packet.size == 0 or packet.is_discard or timestamp is None:
                continue
            frame_pts.append(timestamp)
            if packet.is_keyframe:
                keyframe_pts.append(timestamp)
            if timestamp - frame_pts[0] > max_span:
                raise _too_long(float((timestamp - frame_pts[0]) * time_base), max_seconds)
            if len(frame_pts) > settings.max_video_frames:
                # tiny packets could otherwise fill memory while staying under the duration limit
                raise TaskError(
                    ErrorCode.MEDIA_LIMIT_EXCEEDED, f"video has more than {settings.max_video_frames} frames"
                )
    except av.error.FFmpegError as exc:
        raise TaskError(ErrorCode.CORRUPT_MEDIA, f"damaged video container: {failure_reason(exc)}") from exc
    return frame_pts, keyframe_pts


def _checked_timestamps(
    indexed: IndexedTimes, time_base: Fraction, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """The index's timestamps in decode order, refused on the same packet with the same error as demuxing would."""
    pts = indexed.pts
    max_seconds = settings.max_video_seconds
    over: list[int] = []
    if len(pts):
        too_long = np.flatnonzero(pts - pts[0] > max_seconds / time_base)
        if len(too_long):
            over.append(int(too_long[0]))
    if len(pts) > settings.max_video_frames:
        over.append(settings.max_video_frames)
    if over:
        first = min(over)
        if pts[first] - pts[0] > max_seconds / time_base:  # checked before the count, as in _demux_timestamps
            raise _too_long(float((int(pts[first]) - int(pts[0])) * time_base), max_seconds)
        raise TaskError(ErrorCode.MEDIA_LIMIT_EXCEEDED, f"video has more than {settings.max_video_frames} frames")
    return pts, pts[indexed.is_keyframe]


def _too_long(duration_s: float, max_seconds: float) -> TaskError:
    return TaskError(
        ErrorCode.MEDIA_LIMIT_EXCEEDED, f"video lasts at least {duration_s:.1f} s, the limit is {max_seconds:g} s"
    )
