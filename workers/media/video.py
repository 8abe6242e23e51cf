"""Probe a video by demuxing only, then decode just the frames wanted, seeking only where it pays.

Frame indices are positions in presentation order, counted from the packet timestamps of the
whole stream; a decoded frame is matched to its index by its timestamp, so indices stay exact
after seeks and with B-frames.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import av
import av.error
import numpy as np

from facequeue.errors import ErrorCode, TaskError
from facequeue.settings import Settings

log = logging.getLogger(__name__)

# A seek flushes the decoder and its frame-thread pipeline and restarts demuxing at a keyframe.
# Measured on 640x360 H.264 with threaded decoding, that costs about as much as decoding 10-20
# frames, so a seek is only planned when it skips more frames than this.
SEEK_PENALTY_FRAMES = 16


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


@dataclass(frozen=True, eq=False)
class SampledFrame:
    index: int
    time_s: float | None  # None only for a still image passed along as a frame
    image_bgr: np.ndarray = field(repr=False)


class SeekPoint(NamedTuple):
    keyframe: int  # index of the keyframe to jump to
    target: int  # the wanted frame the jump is for


def probe_video(path: Path, settings: Settings) -> VideoInfo:
    """Frame count, keyframes, size and duration, from the container's packets without decoding any."""
    with _open_container(path) as container:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_side(width, height, settings.max_video_side)
        time_base = stream.time_base or Fraction(1, 1)
        frame_pts, keyframe_pts = _demux_timestamps(container, stream, time_base, settings)
        average_rate = stream.average_rate
    if not frame_pts:
        raise TaskError(ErrorCode.NO_FRAMES, "the video stream has no frames")
    pts = np.array(sorted(frame_pts), dtype=np.int64)
    span_s = float((int(pts[-1]) - int(pts[0])) * time_base)
    fps = float(average_rate) if average_rate else ((len(pts) - 1) / span_s if span_s > 0 else 0.0)
    duration_s = span_s + (1.0 / fps if fps > 0 else 0.0)
    if duration_s > settings.max_video_seconds:
        raise _too_long(duration_s, settings.max_video_seconds)
    return VideoInfo(
        duration_s=duration_s,
        fps=fps,
        width=width,
        height=height,
        frame_count=len(pts),
        keyframe_indices=tuple(sorted({int(np.searchsorted(pts, ts)) for ts in keyframe_pts})),
        frame_pts=pts,
        time_base=time_base,
    )


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
        keyframe = _keyframe_at_or_before(keyframe_indices, target)
        if keyframe - position > penalty:
            seeks.append(SeekPoint(keyframe=keyframe, target=target))
        position = target + 1
    return seeks


def sample_frames(path: Path, info: VideoInfo, indices: Sequence[int], settings: Settings) -> Iterator[SampledFrame]:
    """Yield the wanted frames in order, each with its real index and presentation time.

    A wanted frame that cannot be decoded is replaced by the next one that can (its own index reported).
    """
    wanted = _valid_indices(indices, info.frame_count)
    seek_for = {seek.target: seek.keyframe for seek in plan_seeks(info.keyframe_indices, wanted, SEEK_PENALTY_FRAMES)}
    with _open_container(path) as container:
        reader = _FrameReader(container, _video_stream(container), info)
        last_index = -1
        for target in wanted:
            if target <= last_index:
                continue  # already served by a replacement frame
            if target in seek_for:
                reader.seek_to_keyframe(seek_for[target])
            found = reader.next_at_or_after(target)
            if found is None:
                break  # stream ended early (damaged tail); stop after the last wanted frame anyway
            last_index, frame = found
            yield _to_sampled(last_index, frame, info, settings)
    if wanted and last_index < 0:
        raise reader.nothing_decoded_error()


class _FrameReader:
    """Decodes one stream in presentation order, skipping damaged packets, and can jump to a keyframe."""

    def __init__(self, container: av.container.InputContainer, stream: av.VideoStream, info: VideoInfo) -> None:
        stream.thread_type = "AUTO"
        self._container = container
        self._stream = stream
        self._info = info
        self._last_index = -1
        self._first_error: av.error.FFmpegError | None = None
        self._frames: Iterator[tuple[int, av.VideoFrame]] = self._indexed_frames()

    def next_at_or_after(self, target: int) -> tuple[int, av.VideoFrame] | None:
        return next(((index, frame) for index, frame in self._frames if index >= target), None)

    def seek_to_keyframe(self, keyframe: int) -> None:
        if not self._seek(keyframe):
            return  # not seekable: keep decoding sequentially from where we are
        first = next(self._frames, None)
        if first is None or first[0] > keyframe:
            # Landed past the keyframe (a demuxer that seeks by other timestamps): start over instead.
            self._seek(0)
        else:
            self._frames = itertools.chain([first], self._frames)

    def nothing_decoded_error(self) -> TaskError:
        if self._first_error is not None:
            return TaskError(ErrorCode.CORRUPT_MEDIA, f"no frame could be decoded: {self._first_error}")
        return TaskError(ErrorCode.NO_FRAMES, "the video stream decoded to no frames")

    def _seek(self, index: int) -> bool:
        """Jump to the keyframe at frame ``index``; False (and nothing changed) if the container refuses."""
        try:
            self._container.seek(int(self._info.frame_pts[index]), stream=self._stream, backward=True)
        except av.error.FFmpegError as exc:
            log.warning("video seek failed, decoding on sequentially: %s", exc)
            return False
        self._last_index = index - 1
        self._frames = self._indexed_frames()
        return True

    def _indexed_frames(self) -> Iterator[tuple[int, av.VideoFrame]]:
        for frame in self._decoded_frames():
            index = self._index_of(frame)
            if index is not None:
                self._last_index = index
                yield index, frame

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        try:
            for packet in self._container.demux(self._stream):
                try:
                    yield from packet.decode()
                except av.error.FFmpegError as exc:
                    self._note_error(exc)  # a damaged packet costs its frame(s), not the video
        except av.error.FFmpegError as exc:
            self._note_error(exc)  # the container broke off: what was decoded so far stands

    def _index_of(self, frame: av.VideoFrame) -> int | None:
        """The frame's position in presentation order, or None for a frame the probe did not count."""
        if frame.pts is None:
            return self._last_index + 1
        pts = self._info.frame_pts
        position = int(np.searchsorted(pts, frame.pts))
        return position if position < len(pts) and pts[position] == frame.pts else None

    def _note_error(self, exc: av.error.FFmpegError) -> None:
        # One damaged spot often fails every packet up to the next keyframe: warn once per video.
        if self._first_error is None:
            log.warning("skipping undecodable video data: %s", exc)
            self._first_error = exc


def _to_sampled(index: int, frame: av.VideoFrame, info: VideoInfo, settings: Settings) -> SampledFrame:
    # The header's size was checked by the probe; a stream can still change size midway.
    _check_side(frame.width, frame.height, settings.max_video_side)
    if frame.pts is None:
        time_s = index / info.fps if info.fps > 0 else 0.0
    else:
        time_s = float((frame.pts - int(info.frame_pts[0])) * info.time_base)
    return SampledFrame(index=index, time_s=time_s, image_bgr=frame.to_ndarray(format="bgr24"))


def _open_container(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path), mode="r")
    except av.error.EOFError as exc:
        # E.g. Matroska/WebM written with a header and no clusters.
        raise TaskError(ErrorCode.NO_FRAMES, "the file ends before any media data") from exc
    except av.error.FFmpegError as exc:
        if isinstance(exc, OSError):
            raise  # missing or unreadable file: the caller's problem, not bad media
        raise TaskError(ErrorCode.CORRUPT_MEDIA, f"not a readable video container: {exc}") from exc


def _video_stream(container: av.container.InputContainer) -> av.VideoStream:
    """The first real video stream; cover art ("attached pictures") does not count."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    kinds = ", ".join(sorted({stream.type for stream in container.streams})) or "none"
    raise TaskError(ErrorCode.NO_FRAMES, f"no video stream (streams found: {kinds})")


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
        raise TaskError(ErrorCode.CORRUPT_MEDIA, f"damaged video container: {exc}") from exc
    return frame_pts, keyframe_pts


def _keyframe_at_or_before(keyframe_indices: Sequence[int], index: int) -> int:
    position = bisect.bisect_right(keyframe_indices, index)
    return keyframe_indices[position - 1] if position else 0


def _valid_indices(indices: Sequence[int], frame_count: int) -> list[int]:
    wanted = sorted(set(indices))
    if wanted and (wanted[0] < 0 or wanted[-1] >= frame_count):
        raise ValueError(f"frame indices must lie in [0, {frame_count}), got {wanted[0]}..{wanted[-1]}")
    return wanted


def _check_side(width: int, height: int, max_side: int) -> None:
    if max(width, height) > max_side:
        raise TaskError(
            ErrorCode.MEDIA_LIMIT_EXCEEDED, f"video is {width}x{height}, the limit is {max_side} pixels per side"
        )


def _too_long(duration_s: float, max_seconds: float) -> TaskError:
    return TaskError(
        ErrorCode.MEDIA_LIMIT_EXCEEDED, f"video lasts at least {duration_s:.1f} s, the limit is {max_seconds:g} s"
    )
