"""Decode just the wanted frames of a probed video, seeking only where it pays, and decode ahead of their use."""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import av
import av.error
import numpy as np

from facequeue.core.errors import ErrorCode, TaskError
from facequeue.core.settings import Settings
from workers.media.errors import failure_reason
from workers.media.video.probe import VideoInfo, check_side, keyframe_at_or_before, plan_seeks, video_stream

log = logging.getLogger(__name__)

T = TypeVar("T")

# A seek flushes the decoder and its frame-thread pipeline and restarts demuxing at a keyframe.
# Measured on 640x360 H.264 with threaded decoding, that costs about as much as decoding 10-20
# frames, so a seek is only planned when it skips more frames than this.
SEEK_PENALTY_FRAMES = 16

_PUT_POLL_SECONDS = 0.1  # how often a blocked producer looks for a consumer that went away


@dataclass(frozen=True, eq=False)
class SampledFrame:
    index: int
    time_s: float | None  # None only for a still image passed along as a frame
    image_bgr: np.ndarray = field(repr=False)
    # A still JPEG decoded reduced (workers/media/image.py): file pixels per decoded pixel, and the file's upright
    # (width, height), which results are given in.
    scale: int = 1
    file_size: tuple[int, int] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in file pixels."""
        return self.file_size or (self.image_bgr.shape[1], self.image_bgr.shape[0])


def sample_frames(path: Path, info: VideoInfo, indices: Sequence[int], settings: Settings) -> Iterator[SampledFrame]:
    """Yield the wanted frames in order, each with its real index and presentation time.

    A wanted frame that cannot be decoded is replaced by the next one that can (its own index reported).
    """
    wanted = _valid_indices(indices, info.frame_count)
    seeks = plan_seeks(info.keyframe_indices, wanted, SEEK_PENALTY_FRAMES)
    seek_for = {seek.target: seek.keyframe for seek in seeks}
    with info.open_at_start(path) as container:
        # Frame threads pay off over long runs of decoding; after every seek they must fill up again first.
        mostly_seeking = len(seeks) * 2 > len(wanted)
        reader = _FrameReader(container, video_stream(container), info, "SLICE" if mostly_seeking else "AUTO")
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
            last_index = found[0]
            yield _to_sampled(*found, info, settings)
            del found  # not held while decoding on (see _FrameReader._indexed_frames)
    if wanted and last_index < 0:
        raise reader.nothing_decoded_error()


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
        found = self._first_at_or_after(target)
        if self._drained and (found is None or found[0] != target):
            # The wanted frame's packet did not decode, and the packets after it were never decoded to find
            # its replacement: go back and decode on past it plainly, as without draining.
            self._plain = True
            self._drain_pts = None
            self.seek_to_keyframe(keyframe_at_or_before(self._info.keyframe_indices, target))
            found = self._first_at_or_after(target)
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
            reason = failure_reason(self._first_error)
            return TaskError(ErrorCode.CORRUPT_MEDIA, f"no frame could be decoded: {reason}")
        return TaskError(ErrorCode.NO_FRAMES, "the video stream decoded to no frames")

    def _first_at_or_after(self, target: int) -> tuple[int, av.VideoFrame] | None:
        for found in self._frames:
            if found[0] >= target:
                return found
            del found  # not held while decoding on (see _indexed_frames)
        return None

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
            # A canvas decoder (GIF) copies its whole canvas for the next frame while this one is still
            # referenced, else draws into it in place: 6 ms against 0.01 ms per 4096x4096 frame, measured.
            del frame

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
    check_side(frame.width, frame.height, settings.max_video_side)
    if frame.pts is None:
        time_s = index / info.fps if info.fps > 0 else 0.0
    else:
        time_s = float((frame.pts - int(info.frame_pts[0])) * info.time_base)
    return SampledFrame(index=index, time_s=time_s, image_bgr=frame.to_ndarray(format="bgr24"))


def _valid_indices(indices: Sequence[int], frame_count: int) -> list[int]:
    wanted = sorted(set(indices))
    if wanted and (wanted[0] < 0 or wanted[-1] >= frame_count):
        raise ValueError(f"frame indices must lie in [0, {frame_count}), got {wanted[0]}..{wanted[-1]}")
    return wanted


def prefetched(items: Iterator[T], depth: int) -> Iterator[T]:
    """What ``items`` (decoded frames) yields, produced up to ``depth`` items ahead on a background thread.

    PyAV decoding and OpenCV inference both release the GIL, so the next frame is really decoded while the
    current one is detected. An exception from ``items`` is raised here, at its position in the sequence.
    Closing this generator early (an error or a time limit in the consumer) stops the producer and closes
    ``items`` on the producer's thread, which is the only thread that ever touches it.
    """
    if depth <= 0:
        yield from items
        return
    slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(kind: str, value: object) -> bool:
        while not stop.is_set():
            try:
                slots.put((kind, value), timeout=_PUT_POLL_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer("item", item):
                    return
            offer("end", None)
        except BaseException as error:  # handed to the consumer, which decides what it means
            offer("error", error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    producer = threading.Thread(target=produce, name="frame-prefetch", daemon=True)
    producer.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        producer.join()  # at most one item's production: the producer checks `stop` between items
