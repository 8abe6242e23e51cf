"""Frame timestamps from an MP4/MOV header's sample table, trusted only once the packets agree.

libavformat's index (built from the moov atom) gives each sample's decode timestamp and flags; the
``ctts`` box, read here, gives its composition offset. The packets at both ends of the stream must
then match exactly, so the probe gets the same timestamps and keyframes as demuxing every packet.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import av
import av.error
import numpy as np

from facequeue.core.settings import Settings

# libavformat's AVIndexEntry flags.
_INDEX_KEYFRAME = 0x1
_INDEX_DISCARD = 0x2
# Header sample tables are trusted only after checking this many packets at each end of the stream.
_CHECKED_PACKETS = 48
# A larger moov atom is left to the demuxing probe rather than read into memory.
_MAX_MOOV_BYTES = 64 << 20


@dataclass(frozen=True, eq=False)
class IndexedTimes:
    """Presentation timestamps (decode order) of the frames demuxing would count, and which are keyframes."""

    pts: np.ndarray = field(repr=False)
    is_keyframe: np.ndarray = field(repr=False)


class NotIndexed(enum.Enum):
    NO_TABLE = "no usable sample table; the container is untouched"
    MISMATCH = "the table disagrees with the packets; the container has been read and moved"


def indexed_times(
    path: Path, container: av.container.InputContainer, stream: av.VideoStream, settings: Settings
) -> IndexedTimes | NotIndexed:
    """The header's timestamps of ``stream``, checked against its first and last packets.

    The one constant between the table and the packets (edit list, negative offsets) is read off the
    first packet.
    """
    if "mp4" not in container.format.name.split(","):
        return NotIndexed.NO_TABLE
    entries = stream.index_entries
    count = len(entries)
    if count == 0 or count > settings.max_video_frames + _CHECKED_PACKETS:
        return NotIndexed.NO_TABLE  # no index, or too many samples: demuxing stops at the limit with the usual error
    table = mp4_sample_table(path, stream.id, count)
    if table is None:
        return NotIndexed.NO_TABLE
    durations, offsets = table
    dts = np.empty(count, np.int64)
    flags = np.empty(count, np.int64)
    sizes = np.empty(count, np.int64)
    for position, entry in enumerate(entries):
        dts[position], flags[position], sizes[position] = entry.timestamp, entry.flags, entry.size
    if count > 1 and not (np.all(np.diff(dts) > 0) and np.array_equal(np.diff(dts), durations[:-1])):
        return NotIndexed.NO_TABLE  # the index is not the sample table one to one (e.g. an edit list reordered it)
    try:
        shift = _matching_packets(container, stream, dts, offsets, flags, sizes)
    except av.error.FFmpegError:
        shift = None
    if shift is None:
        return NotIndexed.MISMATCH
    counted = (sizes != 0) & (flags & _INDEX_DISCARD == 0)
    pts = dts + offsets + shift
    return IndexedTimes(pts=pts[counted], is_keyframe=flags[counted] & _INDEX_KEYFRAME != 0)


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


def mp4_sample_table(path: Path, track_id: int, count: int) -> tuple[np.ndarray, np.ndarray] | None:
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


class _BoxHeader(NamedTuple):
    kind: bytes
    header_size: int
    size: int  # of the whole box, header included


def _box_header(head: bytes | memoryview, room: int) -> _BoxHeader | None:
    """The header at the start of ``head`` (up to 16 bytes) of a box with ``room`` bytes left before the end of
    its parent (or file); None if it is malformed or overruns that end."""
    if len(head) < 8:
        return None
    size, kind = struct.unpack_from(">I4s", head)
    header_size = 8
    if size == 1 and len(head) >= 16:  # 64-bit size follows the type
        (size,) = struct.unpack_from(">Q", head, 8)
        header_size = 16
    elif size == 0:  # the box runs to the end
        size = room
    if size < header_size or size > room:
        return None
    return _BoxHeader(kind, header_size, size)


def _read_moov(path: Path) -> memoryview | None:
    """The payload of the file's first top-level moov box, found by walking the box headers."""
    with path.open("rb") as file:
        file_size = os.fstat(file.fileno()).st_size
        position = 0
        while (header := _box_header(file.read(16), file_size - position)) is not None:
            if header.kind == b"moov":
                if header.size > _MAX_MOOV_BYTES:
                    return None
                file.seek(position + header.header_size)
                return memoryview(file.read(header.size - header.header_size))
            position += header.size
            file.seek(position)
    return None


def _boxes(data: memoryview | None) -> Iterator[tuple[bytes, memoryview]]:
    """The (type, payload) of each box laid end to end in ``data``; stops at a malformed header."""
    position = 0
    while data is not None and (header := _box_header(data[position : position + 16], len(data) - position)):
        yield header.kind, data[position + header.header_size : position + header.size]
        position += header.size


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
