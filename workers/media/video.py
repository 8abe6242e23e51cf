"""Probe a video without decoding, then decode just the frames wanted, seeking only where it pays.

Frame indices are positions in presentation order, counted from the packet timestamps of the
whole stream; a decoded frame is matched to its index by its timestamp, so indices stay exact
after seeks and with B-frames.

The probe reads those timestamps from the header when it holds a complete sample table (MP4/MOV:
libavformat's index built from the moov atom, plus the composition offsets of its ``ctts`` box) and
checks them against the packets at both ends of the stream; any other file, or any disagreement, is
demuxed packet by packet instead. Either way the probe gives the same timestamps and keyframes.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
import os
import struct
import threading
import weakref
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

# libavformat's AVIndexEntry flags.
_INDEX_KEYFRAME = 0x1
_INDEX_DISCARD = 0x2
# Header sample tables are trusted only after checking this many packets at each end of the stream.
_CHECKED_PACKETS = 48
# A larger moov atom is left to the demuxing probe rather than read into memory.
_MAX_MOOV_BYTES = 64 << 20
_MISMATCH = object()  # a header sample table that disagrees with the packets


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


@dataclass(frozen=True, eq=False)
class SampledFrame:
    index: int
    time_s: float | None  # None only for a still image passed along as a frame
    image_bgr: np.ndarray = field(repr=False)


class SeekPoint(NamedTuple):
    keyframe: int  # index of the keyframe to jump to
    target: int  # the wanted frame the jump is for


def probe_video(path: Path, settings: Settings) -> VideoInfo:
    """Frame count, keyframes, size and duration, from the container's index or packets without decoding any.

    When the header's index served, the open container is kept for the first ``sample_frames`` of this info
    (closed when the info goes away otherwise); a demuxed container is at its end and is closed.
    """
    container = _open_container(path)
    try:
        stream = _video_stream(container)
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_side(width, height, settings.max_video_side)
        time_base = stream.time_base or Fraction(1, 1)
        average_rate = stream.average_rate
        indexed = _indexed_timestamps(path, container, stream, settings)
        probed = None
        if isinstance(indexed, tuple):
            frame_pts, keyframe_pts = _checked_timestamps(*indexed, time_base, settings)
            probed = _ProbedContainer(path, container)
        elif indexed is _MISMATCH:
            with _open_container(path) as fresh:  # the check moved the first one
                frame_pts, keyframe_pts = _demux_timestamps(fresh, _video_stream(fresh), time_base, settings)
        else:
            frame_pts, keyframe_pts = _demux_timestamps(container, stream, time_base, settings)
        if len(frame_pts) == 0:
            raise TaskError(ErrorCode.NO_FRAMES, "the video stream has no frames")
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
    seeks = plan_seeks(info.keyframe_indices, wanted, SEEK_PENALTY_FRAMES)
    seek_for = {seek.target: seek.keyframe for seek in seeks}
    with _probed_or_opened(path, info) as container:
        # Frame threads pay off over long runs of decoding; after every seek they must fill up again first.
        mostly_seeking = len(seeks) * 2 > len(wanted)
        reader = _FrameReader(container, _video_stream(container), info, "SLICE" if mostly_seeking else "AUTO")
        last_index = -1
        for position, target in enumerate(wanted):
            if target <= last_index:
                continue  # already served by a replacement frame
            following = wanted[position + 1] if position + 1 < len(wanted) else None
            reader.aim(target, last_before_seek=following is None or following in seek_for)
            if target in seek_for:
                reader.seek_to_keyframe(seek_for[target])
            found = reader.next_at_or_after(target)
            if found is None:
                break  # stream ended early (damaged tail); stop after the last wanted frame anyway
            last_index, frame = found
            yield _to_sampled(last_index, frame, info, settings)
    if wanted and last_index < 0:
        raise reader.nothing_decoded_error()


def _probed_or_opened(path: Path, info: VideoInfo) -> av.container.InputContainer:
    """The probe's container back at the first frame if it was kept (and can seek there), else the file anew."""
    probed = info._probed.take(path) if info._probed is not None else None
    if probed is not None:
        try:
            probed.seek(int(info.frame_pts[0]), stream=_video_stream(probed), backward=True)
        except av.error.FFmpegError:
            probed.close()
        else:
            return probed
    return _open_container(path)


class _FrameReader:
    """Decodes one stream in presentation order, skipping damaged packets, and can jump to a keyframe.

    Once aimed at a wanted frame it spares work that cannot change what it returns: H.264 frames no other
    frame refers to and that are shown before the wanted one are not decoded, and when nothing after the
    wanted frame will be decoded without a seek, the decoder is drained right after the wanted frame's
    packet instead of being fed the packets that would push it out.
    """

    # Decoders whose "non-reference" frames are surely referred to by no other frame (nal_ref_idc == 0).
    _SKIPS_NONREF = frozenset({"h264"})

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.VideoStream,
        info: VideoInfo,
        thread_type: str = "AUTO",
    ) -> None:
        stream.thread_type = thread_type
        self._container = container
        self._stream = stream
        self._codec = stream.codec_context
        self._info = info
        self._last_index = -1
        self._first_error: av.error.FFmpegError | None = None
        self._skips_nonref = self._codec.name in self._SKIPS_NONREF
        self._skipping = False
        self._aim_pts: int | None = None  # frames shown before this one are not wanted
        self._drain_pts: int | None = None  # the decoder may be drained after the packet with this timestamp
        self._drained = False
        # Error concealment may draw on any earlier picture: once the stream proved damaged, decode it plainly.
        self._plain = False
        # Draining is undone by a seek; it is only done where seeks work (an index, or one that worked).
        self._can_drain = len(stream.index_entries) > 0
        self._frames: Iterator[tuple[int, av.VideoFrame]] = self._indexed_frames()

    def aim(self, target: int, *, last_before_seek: bool) -> None:
        """Prepare to decode up to frame ``target``; ``last_before_seek``: no frame after it is needed
        before the next seek (or ever)."""
        self._aim_pts = int(self._info.frame_pts[target])
        self._drain_pts = self._aim_pts if last_before_seek and self._can_drain else None

    def next_at_or_after(self, target: int) -> tuple[int, av.VideoFrame] | None:
        found = next(((index, frame) for index, frame in self._frames if index >= target), None)
        if self._drained and (found is None or found[0] != target):
            # The wanted frame's packet did not decode, and the packets after it were never decoded to find
            # its replacement: go back and decode on past it plainly, as without draining.
            self._plain = True
            self._drain_pts = None
            self.seek_to_keyframe(_keyframe_at_or_before(self._info.keyframe_indices, target))
            found = next(((index, frame) for index, frame in self._frames if index >= target), None)
        return found

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
            self._can_drain, self._drain_pts = False, None
            if self._drained:  # nothing left in this decoder: go on from the demuxer's position
                self._codec.flush_buffers()
                self._drained = False
                self._frames = self._indexed_frames()
            return False
        self._last_index = index - 1
        self._drained = False
        self._can_drain = True
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
                pts = packet.pts
                if self._skips_nonref:
                    self._skip_nonref(pts is not None and self._aim_pts is not None and pts < self._aim_pts)
                try:
                    yield from packet.decode()
                except av.error.FFmpegError as exc:
                    self._note_error(exc)  # a damaged packet costs its frame(s), not the video
                if pts is not None and pts == self._drain_pts and packet.size and not self._plain:
                    self._drained = True
                    try:
                        yield from self._codec.decode(None)
                    except av.error.FFmpegError as exc:
                        self._note_error(exc)
                    return
        except av.error.FFmpegError as exc:
            self._note_error(exc)  # the container broke off: what was decoded so far stands

    def _skip_nonref(self, skip: bool) -> None:
        skip = skip and not self._plain
        if skip != self._skipping:
            self._codec.skip_frame = "NONREF" if skip else "DEFAULT"
            self._skipping = skip

    def _index_of(self, frame: av.VideoFrame) -> int | None:
        """The frame's position in presentation order, or None for a frame the probe did not count."""
        if frame.pts is None:
            return self._last_index + 1
        pts = self._info.frame_pts
        position = int(np.searchsorted(pts, frame.pts))
        return position if position < len(pts) and pts[position] == frame.pts else None

    def _note_error(self, exc: av.error.FFmpegError) -> None:
        # One damaged spot often fails every packet up to the next keyframe: warn once per video.
        self._plain = True
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


def _checked_timestamps(
    pts: np.ndarray, keyframes: np.ndarray, time_base: Fraction, settings: Settings
) -> tuple[np.ndarray, np.ndarray]:
    """The index's timestamps in decode order, refused on the same packet with the same error as demuxing would."""
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
    return pts, pts[keyframes]


def _indexed_timestamps(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream, settings: Settings
) -> tuple[np.ndarray, np.ndarray] | object | None:
    """Presentation timestamps (decode order) and keyframe flags of the frames demuxing would count, from
    an MP4/MOV header's sample table; None when the file has no such table (the container is untouched),
    _MISMATCH when it disagrees with the packets (the container has been read and moved).

    libavformat's index gives each sample's decode timestamp and flags, the ``ctts`` box its composition
    offset; the one constant in between (edit list, negative offsets) is read off the first packet, and the
    packets of the first and last stretch of the stream must match exactly.
    """
    if "mp4" not in container.format.name.split(","):
        return None
    entries = stream.index_entries
    count = len(entries)
    if count == 0 or count > settings.max_video_frames + _CHECKED_PACKETS:
        return None  # no index, or too many samples: demuxing stops at the limit with the usual error
    table = _mp4_sample_table(path, stream.id, count)
    if table is None:
        return None
    durations, offsets = table
    dts = np.empty(count, np.int64)
    flags = np.empty(count, np.int64)
    sizes = np.empty(count, np.int64)
    for position, entry in enumerate(entries):
        dts[position], flags[position], sizes[position] = entry.timestamp, entry.flags, entry.size
    if count > 1 and not (np.all(np.diff(dts) > 0) and np.array_equal(np.diff(dts), durations[:-1])):
        return None  # the index is not the sample table one to one (e.g. an edit list reordered it)
    try:
        shift = _matching_packets(container, stream, dts, offsets, flags, sizes)
    except av.error.FFmpegError:
        shift = None
    if shift is None:
        return _MISMATCH
    counted = (sizes != 0) & (flags & _INDEX_DISCARD == 0)
    pts = dts + offsets + shift
    return pts[counted], (flags[counted] & _INDEX_KEYFRAME != 0)


def _matching_packets(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    dts: np.ndarray,
    offsets: np.ndarray,
    flags: np.ndarray,
    sizes: np.ndarray,
) -> int | None:
    """The constant between the packets' and ``dts + offsets``, or None unless every packet at both ends of the
    stream (the first ones, and from the last keyframe before the final stretch) has the index's timestamps,
    keyframe and discard flags and size."""
    count = len(dts)
    tail_keyframes = np.flatnonzero(flags[: max(1, count - _CHECKED_PACKETS + 1)] & _INDEX_KEYFRAME)
    tail_start = int(tail_keyframes[-1]) if len(tail_keyframes) else 0
    shift = None
    for start in dict.fromkeys((0, tail_start)):
        if start:  # by presentation timestamp, as sample_frames seeks
            container.seek(int(dts[start] + offsets[start]) + shift, stream=stream, backward=True)
        seen, position = 0, -1
        for packet in container.demux(stream):
            if seen > count - start + _CHECKED_PACKETS:
                return None  # the seek landed far before the last keyframe
            if packet.dts is None and packet.size == 0:
                break  # the flush packet at the end
            position = int(np.searchsorted(dts, packet.dts)) if packet.dts is not None else count
            if position >= count or dts[position] != packet.dts or packet.pts is None:
                return None
            shift = packet.pts - int(dts[position] + offsets[position]) if shift is None else shift
            if (
                packet.pts != int(dts[position] + offsets[position]) + shift
                or packet.is_keyframe != bool(flags[position] & _INDEX_KEYFRAME)
                or packet.is_discard != bool(flags[position] & _INDEX_DISCARD)
                or packet.size != sizes[position]
            ):
                return None
            seen += 1
            if start == 0 and seen >= _CHECKED_PACKETS:
                break
        if (start or seen < _CHECKED_PACKETS) and position != count - 1:
            return None  # the stream did not end where the index does
    return shift


def _mp4_sample_table(path: Path, track_id: int, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-sample durations (``stts``) and composition offsets (``ctts``, zero without one) of the track,
    or None unless its sample table has exactly ``count`` samples."""
    moov = _read_moov(path)
    if moov is None:
        return None
    traks = [trak for kind, trak in _boxes(moov) if kind == b"trak" and _track_id(trak) == track_id]
    if len(traks) != 1:
        return None
    stbl = _child(_child(_child(traks[0], b"mdia"), b"minf"), b"stbl")
    stts = _child(stbl, b"stts")
    if stts is None:
        return None
    durations = _expanded_entries(stts, count, signed=False)
    ctts = _child(stbl, b"ctts")
    offsets = np.zeros(count, np.int64) if ctts is None else _expanded_entries(ctts, count, signed=True)
    if durations is None or offsets is None:
        return None
    return durations, offsets


def _read_moov(path: Path) -> memoryview | None:
    """The payload of the file's first top-level moov box, found by walking the box headers."""
    with path.open("rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        position = 0
        while position + 8 <= file_size:
            file.seek(position)
            header = file.read(16)
            size, kind = struct.unpack(">I4s", header[:8])
            header_size = 8
            if size == 1 and len(header) == 16:
                (size,) = struct.unpack(">Q", header[8:])
                header_size = 16
            elif size == 0:
                size = file_size - position
            if size < header_size or position + size > file_size:
                return None
            if kind == b"moov":
                if size > _MAX_MOOV_BYTES:
                    return None
                file.seek(position + header_size)
                return memoryview(file.read(size - header_size))
            position += size
    return None


def _boxes(data: memoryview | None) -> Iterator[tuple[bytes, memoryview]]:
    """The (type, payload) of each box laid end to end in ``data``; stops at a malformed header."""
    position = 0
    while data is not None and position + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, position)
        header_size = 8
        if size == 1 and position + 16 <= len(data):
            (size,) = struct.unpack_from(">Q", data, position + 8)
            header_size = 16
        elif size == 0:
            size = len(data) - position
        if size < header_size or position + size > len(data):
            return
        yield kind, data[position + header_size : position + size]
        position += size


def _child(box: memoryview | None, kind: bytes) -> memoryview | None:
    return next((payload for child_kind, payload in _boxes(box) if child_kind == kind), None)


def _track_id(trak: memoryview) -> int | None:
    tkhd = _child(trak, b"tkhd")
    if tkhd is None or len(tkhd) < 24:
        return None
    return struct.unpack_from(">I", tkhd, 20 if tkhd[0] == 1 else 12)[0]


def _expanded_entries(box: memoryview, count: int, *, signed: bool) -> np.ndarray | None:
    """A (sample count, value) run-length table (``stts``, ``ctts``) as one value per sample."""
    if len(box) < 8:
        return None
    (entry_count,) = struct.unpack_from(">I", box, 4)
    if len(box) < 8 + 8 * entry_count:
        return None
    table = np.frombuffer(box, dtype=">u4", count=2 * entry_count, offset=8).reshape(-1, 2)
    runs = table[:, 0].astype(np.int64)
    values = (table[:, 1].view(">i4") if signed else table[:, 1]).astype(np.int64)
    if np.any(runs == 0) or np.any(runs >= 1 << 31) or int(runs.sum()) != count:
        return None  # libavformat skips such runs; leave those files to the demuxing probe
    return np.repeat(values, runs)


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
