from __future__ import annotations

import itertools
import struct
from pathlib import Path

import av
import numpy as np
import pytest

from facequeue.core.errors import ErrorCode, TaskError
from tests.media.numbered_video import (
    HEIGHT,
    NUMBERED_FORMATS,
    NUMBERED_FRAME_COUNT,
    WIDTH,
    frame_number,
    numbered_frame,
)
from workers.media.video import (
    SeekPoint,
    VideoInfo,
    decode,
    mp4_index,
    plan_indices_at_rate,
    plan_sample_indices,
    plan_seeks,
    probe,
    probe_video,
    sample_frames,
)
from workers.media.video.mp4_index import IndexedTimes, NotIndexed

SHARED_VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "videos"
FPS = 25


def _sample(path: Path, settings, num_frames: int) -> tuple[VideoInfo, list[decode.SampledFrame]]:
    info = probe_video(path, settings)
    return info, list(sample_frames(path, info, plan_sample_indices(info.frame_count, num_frames), settings))


def _error(path: Path, settings) -> TaskError:
    with pytest.raises(TaskError) as caught:
        _sample(path, settings, 10)
    return caught.value


def test_plan_sample_indices_spreads_evenly() -> None:
    assert plan_sample_indices(64, 8) == [0, 8, 16, 24, 32, 40, 48, 56]
    assert plan_sample_indices(10, 3) == [0, 3, 6]
    assert plan_sample_indices(3, 100) == [0, 1, 2]
    assert plan_sample_indices(5, 0) == []


@pytest.mark.parametrize("name", NUMBERED_FORMATS)
def test_probe_counts_frames_without_decoding(numbered_videos: dict[str, Path], make_settings, name: str) -> None:
    info = probe_video(numbered_videos[name], make_settings())
    assert (info.frame_count, info.width, info.height) == (NUMBERED_FRAME_COUNT, WIDTH, HEIGHT)
    assert info.fps == pytest.approx(FPS)
    assert info.duration_s == pytest.approx(NUMBERED_FRAME_COUNT / FPS)
    assert info.keyframe_indices[0] == 0


@pytest.mark.parametrize("name", NUMBERED_FORMATS)
def test_samples_are_the_frames_they_claim_to_be(numbered_videos: dict[str, Path], make_settings, name: str) -> None:
    info, frames = _sample(numbered_videos[name], make_settings(), 10)
    assert [frame.index for frame in frames] == plan_sample_indices(NUMBERED_FRAME_COUNT, 10)
    for frame in frames:
        assert frame_number(frame.image_bgr) == frame.index
        assert frame.time_s == pytest.approx(frame.index / FPS)
        assert frame.image_bgr.shape == (HEIGHT, WIDTH, 3)
        assert frame.image_bgr.dtype == np.uint8


def test_asking_for_more_frames_than_exist_returns_each_once(numbered_videos: dict[str, Path], make_settings) -> None:
    _, frames = _sample(numbered_videos["mp4-h264"], make_settings(), 100)
    assert [frame_number(frame.image_bgr) for frame in frames] == list(range(NUMBERED_FRAME_COUNT))


def test_plan_seeks_jumps_only_when_it_skips_enough() -> None:
    keyframes = (0, 100, 200)
    assert plan_seeks(keyframes, [150], penalty=16) == [SeekPoint(keyframe=100, target=150)]
    assert plan_seeks(keyframes, [5, 110], penalty=16) == [SeekPoint(keyframe=100, target=110)]
    # Decoding on from frame 91 to keyframe 100 is cheaper than a seek.
    assert plan_seeks(keyframes, [90, 110], penalty=16) == []
    # A keyframe behind the decoder is never a reason to jump back.
    assert plan_seeks(keyframes, [120, 130], penalty=16) == [SeekPoint(keyframe=100, target=120)]


def test_single_keyframe_video_decodes_sequentially(numbered_videos: dict[str, Path], make_settings) -> None:
    info = probe_video(numbered_videos["mp4-h264"], make_settings())
    assert info.keyframe_indices == (0,)
    assert plan_seeks(info.keyframe_indices, [0, 30, 63], decode.SEEK_PENALTY_FRAMES) == []


def test_sparse_samples_of_a_long_video_seek(long_video: Path, make_settings) -> None:
    info, frames = _sample(long_video, make_settings(), 10)
    wanted = plan_sample_indices(600, 10)
    seeks = plan_seeks(info.keyframe_indices, wanted, decode.SEEK_PENALTY_FRAMES)
    assert info.frame_count == 600
    assert len(seeks) >= 5
    assert all(seek.keyframe <= seek.target and seek.keyframe in info.keyframe_indices for seek in seeks)
    assert [frame.index for frame in frames] == wanted
    assert [frame_number(frame.image_bgr) for frame in frames] == wanted


def test_dense_samples_of_a_long_video_do_not_seek(long_video: Path, make_settings) -> None:
    info = probe_video(long_video, make_settings())
    assert plan_seeks(info.keyframe_indices, plan_sample_indices(600, 100), decode.SEEK_PENALTY_FRAMES) == []


def test_seeking_returns_the_same_frames_as_decoding_through(long_video: Path, make_settings, monkeypatch) -> None:
    _, with_seeks = _sample(long_video, make_settings(), 12)
    monkeypatch.setattr(decode, "SEEK_PENALTY_FRAMES", 10**9)
    _, sequential = _sample(long_video, make_settings(), 12)
    assert [(f.index, f.time_s) for f in with_seeks] == [(f.index, f.time_s) for f in sequential]
    assert all(np.array_equal(a.image_bgr, b.image_bgr) for a, b in zip(with_seeks, sequential, strict=True))


def test_garbage_is_corrupt(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    error = _error(path, make_settings())
    assert error.code == ErrorCode.CORRUPT_MEDIA
    assert "not a readable video container" in error.detail


def test_truncated_mp4_is_corrupt_and_its_message_names_no_server_path(
    long_video: Path, tmp_path: Path, make_settings
) -> None:
    # The index (moov) comes last, so the first half of the file holds frames no one can locate.
    data = long_video.read_bytes()
    path = tmp_path / "data" / "uploads" / "truncated.mp4"
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: len(data) // 2])
    error = _error(path, make_settings())
    assert error.code == ErrorCode.CORRUPT_MEDIA
    # FFmpeg's own text names the file and its errno: "[Errno 1094995529] ...: '/tmp/.../truncated.mp4'". What
    # follows our prefix is FFmpeg's wording for the failure, so only its absence of path and errno is asserted.
    assert error.message.startswith("Media could not be decoded: not a readable video container: ")
    assert "/" not in error.message and "Errno" not in error.message and "truncated.mp4" not in error.message


def test_damaged_packets_are_skipped(long_video: Path, tmp_path: Path, make_settings, caplog) -> None:
    data = bytearray(long_video.read_bytes())
    damaged_at = len(data) * 2 // 5  # inside the frame data; the index (moov) sits at the end
    data[damaged_at : damaged_at + 300] = np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    _, frames = _sample(path, make_settings(), 600)
    indices = [frame.index for frame in frames]
    assert "skipping undecodable video data" in caplog.text
    assert 0 < len(frames) < 600
    assert indices == sorted(set(indices))
    # Before the damage and after the next keyframe the pictures are intact.
    assert [frame_number(frames[i].image_bgr) for i in (0, -1)] == [indices[0], indices[-1]] == [0, 599]


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv"])
def test_video_without_frames(tmp_path: Path, make_settings, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        container.start_encoding()
    assert _error(path, make_settings()).code == ErrorCode.NO_FRAMES


def test_audio_only_file_has_no_video_stream(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    error = _error(path, make_settings())
    assert (error.code, error.detail) == (ErrorCode.NO_FRAMES, "no video stream (streams found: audio)")


def _gif_of_pixels(path: Path, frame_count: int, side: int) -> Path:
    """``frame_count`` frames of one white pixel each, the n-th at (n % side, n // side), kept on a black
    ``side`` x ``side`` canvas: frame n shows n + 1 white pixels."""
    gif = bytearray(b"GIF89a" + struct.pack("<HHBBB", side, side, 0xF0, 0, 0) + bytes([0, 0, 0, 255, 255, 255]))
    for n in range(frame_count):
        gif += b"\x21\xf9\x04\x04\x02\x00\x00\x00"  # disposal 1 (keep), 20 ms
        gif += b"\x2c" + struct.pack("<HHHHB", n % side, n // side, 1, 1, 0)
        gif += b"\x02\x02\x4c\x01\x00"  # LZW codes 4, 1, 5 (3 bits each): clear, colour 1 (white), end
    path.write_bytes(bytes(gif + b";"))
    return path


def test_animation_over_the_pixel_cap_is_refused_by_the_probe(tmp_path: Path, make_settings) -> None:
    path = _gif_of_pixels(tmp_path / "pixels.gif", 5000, 4096)
    assert path.stat().st_size < 120_000
    with pytest.raises(TaskError) as caught:
        probe_video(path, make_settings())  # before any frame is decoded
    assert (caught.value.code, caught.value.detail) == (
        ErrorCode.MEDIA_LIMIT_EXCEEDED,
        "animation has 5000 frames of 4096x4096 = 83886080000 pixels, the limit is 2000000000",
    )


def test_animation_under_the_pixel_cap_samples_its_composited_frames(tmp_path: Path, make_settings) -> None:
    path = _gif_of_pixels(tmp_path / "pixels.gif", 5000, 4096)
    info, frames = _sample(path, make_settings(max_animation_pixels=10**11), 5)
    assert (info.frame_count, info.keyframe_indices) == (5000, (0,))
    assert [frame.index for frame in frames] == [0, 1000, 2000, 3000, 4000]
    assert [int(np.count_nonzero(frame.image_bgr[..., 0])) for frame in frames] == [1, 1001, 2001, 3001, 4001]


def test_too_long_video_is_refused(numbered_videos: dict[str, Path], make_settings) -> None:
    error = _error(numbered_videos["mp4-h264"], make_settings(max_video_seconds=1))
    assert error.code == ErrorCode.MEDIA_LIMIT_EXCEEDED
    assert "the limit is 1 s" in error.detail


def test_too_many_frames_are_refused(numbered_videos: dict[str, Path], make_settings) -> None:
    error = _error(numbered_videos["mp4-h264"], make_settings(max_video_frames=10))
    assert (error.code, error.detail) == (ErrorCode.MEDIA_LIMIT_EXCEEDED, "video has more than 10 frames")


def test_too_large_frames_are_refused(numbered_videos: dict[str, Path], make_settings) -> None:
    error = _error(numbered_videos["webm-vp9"], make_settings(max_video_side=100))
    assert (error.code, error.detail) == (
        ErrorCode.MEDIA_LIMIT_EXCEEDED,
        "video is 160x120, the limit is 100 pixels per side",
    )


def test_out_of_range_indices_are_a_caller_bug(numbered_videos: dict[str, Path], make_settings) -> None:
    path = numbered_videos["mp4-h264"]
    info = probe_video(path, make_settings())
    with pytest.raises(ValueError, match="frame indices must lie in"):
        list(sample_frames(path, info, [0, NUMBERED_FRAME_COUNT], make_settings()))


@pytest.mark.testdata
@pytest.mark.parametrize("clip", ["face_recognition_short_hamilton_clip.mp4", "liveportrait_d6.mp4"])
def test_shared_clips_give_100_increasing_frames(make_settings, clip: str) -> None:
    info, frames = _sample(SHARED_VIDEOS / clip, make_settings(), 100)
    indices = [frame.index for frame in frames]
    assert len(frames) == 100
    assert indices == plan_sample_indices(info.frame_count, 100)
    assert indices == sorted(set(indices))
    assert all(later.time_s > earlier.time_s for earlier, later in itertools.pairwise(frames))


class _OvershootingSeeks:
    """A container whose seeks land on the last keyframe, as a demuxer seeking by other timestamps might."""

    def __init__(self, container: av.container.InputContainer, info: VideoInfo) -> None:
        self._container = container
        self._info = info
        self.seeks: list[int] = []

    def seek(self, pts: int, **options: object) -> None:
        self.seeks.append(pts)
        start = int(self._info.frame_pts[0])
        last_keyframe = int(self._info.frame_pts[self._info.keyframe_indices[-1]])
        self._container.seek(start if pts == start else last_keyframe, **options)

    def demux(self, *streams: av.stream.Stream):
        return self._container.demux(*streams)


def test_seek_that_overshoots_falls_back_to_the_start(long_video: Path, make_settings) -> None:
    info = probe_video(long_video, make_settings())
    keyframe = info.keyframe_indices[5]
    with av.open(str(long_video)) as container:
        overshooting = _OvershootingSeeks(container, info)
        reader = decode._FrameReader(overshooting, container.streams.video[0], info)
        reader.seek_to_keyframe(keyframe)
        index, frame = reader.next_at_or_after(keyframe + 3)
    assert overshooting.seeks == [int(info.frame_pts[keyframe]), int(info.frame_pts[0])]
    assert index == keyframe + 3 == frame_number(frame.to_ndarray(format="bgr24"))


@pytest.mark.parametrize(
    ("frame_count", "fps", "sample_fps", "limit", "expected"),
    [
        (75, 25.0, 5.0, 100, list(range(0, 75, 5))),
        (75, 25.0, 0.5, 100, [0, 50]),
        (75, 25.0, 25.0, 10, list(range(10))),  # capped at the limit
        (10, 30.0, 60.0, 100, list(range(10))),  # faster than the video: every frame once
        (100, 29.97, 2.0, 100, [0, 15, 30, 45, 60, 75, 90]),
    ],
)
def test_indices_at_a_sample_rate(frame_count, fps, sample_fps, limit, expected) -> None:
    assert plan_indices_at_rate(frame_count, fps, sample_fps, limit) == expected


# --- The header index probe and the decode shortcuts against the plain path (demux probe, decode every frame) ---

GOP_FRAME_COUNT = 160
# name -> (file name, codec, keyframe interval, encoder options, container options); whether the probe can use the
# header's sample table is in HEADER_INDEXED.
GOP_VIDEOS: dict[str, tuple[str, str, int, dict[str, str], dict[str, str]]] = {
    "mp4-h264-gop8": ("gop8.mp4", "libx264", 8, {}, {}),
    "mp4-h264-gop24": ("gop24.mp4", "libx264", 24, {}, {}),
    "mp4-h264-gop50-no-bframes": ("gop50.mp4", "libx264", 50, {"bframes": "0"}, {}),
    "mp4-h264-open-gop": ("open.mp4", "libx264", 30, {"x264-params": "open-gop=1:scenecut=0"}, {}),
    "mov-mpeg4-bframes": ("bframes.mov", "mpeg4", 20, {"bf": "2"}, {}),
    "mp4-hevc-gop20": ("hevc.mp4", "libx265", 20, {"x265-params": "log-level=none"}, {}),
    "mp4-h264-fragmented": ("fragmented.mp4", "libx264", 20, {}, {"movflags": "frag_keyframe+empty_moov"}),
    "ts-h264-gop20": ("gop20.ts", "libx264", 20, {}, {}),
    "webm-vp9-gop16": ("gop16.webm", "libvpx-vp9", 16, {"deadline": "realtime", "cpu-used": "8"}, {}),
}
HEADER_INDEXED = {name for name in GOP_VIDEOS if name.startswith(("mp4", "mov")) and "fragmented" not in name}


def _write_gop_video(path: Path, codec: str, gop: int, options: dict[str, str], container_options: dict[str, str]):
    with av.open(str(path), "w", options=container_options) as container:
        stream = container.add_stream(codec, rate=FPS, options=options)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        for index in range(GOP_FRAME_COUNT):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(numbered_frame(index), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="session")
def gop_videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("gop")
    videos = {}
    for name, (filename, codec, gop, options, container_options) in GOP_VIDEOS.items():
        try:
            av.codec.Codec(codec, "w")
        except av.error.FFmpegError:  # e.g. an FFmpeg built without libx265
            continue
        videos[name] = _write_gop_video(folder / filename, codec, gop, options, container_options)
    return videos


def _gop_video(gop_videos: dict[str, Path], name: str) -> Path:
    if name not in gop_videos:
        pytest.skip(f"this FFmpeg cannot encode {GOP_VIDEOS[name][1]}")
    return gop_videos[name]


def _use_plain_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler as it was before the header index and the decode shortcuts: probe by demuxing every packet,
    decode every frame with frame threads, never drain the decoder."""

    class PlainReader(decode._FrameReader):
        def __init__(self, container, stream, info, thread_type="AUTO") -> None:
            super().__init__(container, stream, info, "AUTO")

        def aim(self, target: int, *, last_before_seek: bool) -> None:
            pass

    monkeypatch.setattr(probe, "indexed_times", lambda *args: NotIndexed.NO_TABLE)
    monkeypatch.setattr(decode, "_FrameReader", PlainReader)


def _index_sets(info: VideoInfo) -> list[list[int]]:
    count, keyframes = info.frame_count, list(info.keyframe_indices)
    rng = np.random.default_rng(7)
    return [
        *(plan_sample_indices(count, n) for n in (1, 5, 20, 100)),
        keyframes,
        [k + 1 for k in keyframes],
        [k - 1 for k in keyframes[1:]],
        [count - 1],
        sorted(set(rng.integers(0, count, 12).tolist())),
    ]


def _same_frames(got: list[decode.SampledFrame], expected: list[decode.SampledFrame]) -> bool:
    return [(f.index, f.time_s) for f in got] == [(f.index, f.time_s) for f in expected] and all(
        np.array_equal(a.image_bgr, b.image_bgr) for a, b in zip(got, expected, strict=True)
    )


def _assert_same_info(got: VideoInfo, expected: VideoInfo) -> None:
    assert np.array_equal(got.frame_pts, expected.frame_pts)
    assert (got.keyframe_indices, got.frame_count, got.time_base) == (
        expected.keyframe_indices,
        expected.frame_count,
        expected.time_base,
    )
    assert (got.duration_s, got.fps, got.width, got.height) == (
        expected.duration_s,
        expected.fps,
        expected.width,
        expected.height,
    )


@pytest.mark.parametrize("name", GOP_VIDEOS)
def test_probe_reads_the_header_index_where_there_is_one(
    gop_videos: dict[str, Path], make_settings, monkeypatch, name: str
) -> None:
    path, settings = _gop_video(gop_videos, name), make_settings()
    with av.open(str(path)) as container:
        indexed = probe.indexed_times(path, container, probe.video_stream(container), settings)
    assert isinstance(indexed, IndexedTimes) == (name in HEADER_INDEXED)
    info = probe_video(path, settings)
    _use_plain_path(monkeypatch)
    _assert_same_info(info, probe_video(path, settings))
    assert info.frame_count == GOP_FRAME_COUNT
    assert len(info.keyframe_indices) >= GOP_FRAME_COUNT // GOP_VIDEOS[name][2]


@pytest.mark.parametrize("penalty", [decode.SEEK_PENALTY_FRAMES, 0, 10**9], ids=["planned", "seek-always", "never"])
@pytest.mark.parametrize("name", GOP_VIDEOS)
def test_samples_match_the_plain_path(
    gop_videos: dict[str, Path], make_settings, monkeypatch, name: str, penalty: int
) -> None:
    path, settings = _gop_video(gop_videos, name), make_settings()
    monkeypatch.setattr(decode, "SEEK_PENALTY_FRAMES", penalty)
    sets = _index_sets(probe_video(path, settings))
    # A fresh probe for each set: the sampler then reuses the probe's container where it kept one.
    sampled = [list(sample_frames(path, probe_video(path, settings), indices, settings)) for indices in sets]
    _use_plain_path(monkeypatch)
    plain_info = probe_video(path, settings)
    for indices, frames in zip(sets, sampled, strict=True):
        assert [frame.index for frame in frames] == indices
        assert [frame_number(frame.image_bgr) for frame in frames] == indices
        assert _same_frames(frames, list(sample_frames(path, plain_info, indices, settings))), indices


def test_samples_of_the_shared_long_video_match_the_plain_path(long_video: Path, make_settings, monkeypatch) -> None:
    settings = make_settings()
    info = probe_video(long_video, settings)
    sets = _index_sets(info)
    sampled = [list(sample_frames(long_video, probe_video(long_video, settings), s, settings)) for s in sets]
    _use_plain_path(monkeypatch)
    for indices, frames in zip(sets, sampled, strict=True):
        assert _same_frames(frames, list(sample_frames(long_video, info, indices, settings))), indices


def test_header_index_that_disagrees_with_the_packets_is_not_used(
    gop_videos: dict[str, Path], make_settings, monkeypatch
) -> None:
    path, settings = _gop_video(gop_videos, "mp4-h264-gop24"), make_settings()
    real_table = mp4_index.mp4_sample_table

    def off_by_one_at_the_end(*args):
        durations, offsets = real_table(*args)
        offsets = offsets.copy()
        offsets[-1] += 1
        return durations, offsets

    monkeypatch.setattr(mp4_index, "mp4_sample_table", off_by_one_at_the_end)
    with av.open(str(path)) as container:
        assert probe.indexed_times(path, container, probe.video_stream(container), settings) is NotIndexed.MISMATCH
    info = probe_video(path, settings)
    _use_plain_path(monkeypatch)
    _assert_same_info(info, probe_video(path, settings))


@pytest.mark.parametrize(
    "limits", [{"max_video_frames": 30}, {"max_video_seconds": 1}, {"max_video_frames": 40, "max_video_seconds": 1.5}]
)
def test_header_index_probe_refuses_like_demuxing(numbered_videos: dict[str, Path], make_settings, monkeypatch, limits):
    path, settings = numbered_videos["mp4-h264"], make_settings(**limits)
    with av.open(str(path)) as container:
        assert isinstance(probe.indexed_times(path, container, probe.video_stream(container), settings), IndexedTimes)
    error = _error(path, settings)
    _use_plain_path(monkeypatch)
    plain = _error(path, settings)
    assert (error.code, error.detail) == (plain.code, plain.detail)
    assert error.code == ErrorCode.MEDIA_LIMIT_EXCEEDED


def test_undecodable_wanted_frame_is_replaced_as_before(long_video: Path, tmp_path: Path, make_settings, monkeypatch):
    """A wanted frame whose packet does not decode: its replacement is the frame the plain path gives, also when
    the decoder was drained right after that packet (the frames after it must then be decoded after all)."""
    settings = make_settings()
    info = probe_video(long_video, settings)
    with av.open(str(long_video)) as container:
        packets = {p.pts: (p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size}
    cases = []
    for keyframe in info.keyframe_indices[4:10]:
        target = keyframe + 8
        position, size = packets[int(info.frame_pts[target])]
        data = bytearray(long_video.read_bytes())
        data[position : position + size] = bytes(size)
        path = tmp_path / f"damaged-{target}.mp4"
        path.write_bytes(bytes(data))
        for indices in ([0, target, 590], [target]):
            cases.append((path, indices, list(sample_frames(path, probe_video(path, settings), indices, settings))))
    _use_plain_path(monkeypatch)
    for path, indices, frames in cases:
        assert _same_frames(frames, list(sample_frames(path, probe_video(path, settings), indices, settings))), indices
    assert any(frames[-1].index != indices[-1] for _, indices, frames in cases)  # some frames were replaced


def test_wanted_frame_missing_after_draining_is_decoded_again_plainly(long_video: Path, make_settings, monkeypatch):
    """The decoder was drained after the wanted frame's packet, yet the frame did not come out (a decoder that drops
    it without an error): the reader goes back to the keyframe and decodes on without draining."""
    settings = make_settings()
    info = probe_video(long_video, settings)
    target = info.keyframe_indices[6] + 5
    real_index_of = decode._FrameReader._index_of
    dropped = []

    def drop_once(self, frame):
        index = real_index_of(self, frame)
        if index == target and not dropped:
            dropped.append(self._drained)
            return None
        return index

    monkeypatch.setattr(decode._FrameReader, "_index_of", drop_once)
    frames = list(sample_frames(long_video, info, [0, target, 590], settings))
    assert dropped == [True]  # dropped in the drained pass
    assert [frame.index for frame in frames] == [0, target, 590]
    assert [frame_number(frame.image_bgr) for frame in frames] == [0, target, 590]


class _RefusingSeeks:
    """A container that cannot seek (its demuxer has no seek support)."""

    def __init__(self, container: av.container.InputContainer) -> None:
        self._container = container

    def seek(self, pts: int, **options: object) -> None:
        raise av.error.FFmpegError(1, "seeking refused")

    def demux(self, *streams: av.stream.Stream):
        return self._container.demux(*streams)


def test_failed_seek_after_draining_decodes_on(long_video: Path, make_settings) -> None:
    info = probe_video(long_video, make_settings())
    first, second = info.keyframe_indices[2] + 3, info.keyframe_indices[12] + 3
    with av.open(str(long_video)) as container:
        reader = decode._FrameReader(_RefusingSeeks(container), container.streams.video[0], info)
        reader.aim(first, last_before_seek=True)
        index, frame = reader.next_at_or_after(first)
        assert index == first == frame_number(frame.to_ndarray(format="bgr24"))
        reader.aim(second, last_before_seek=True)
        reader.seek_to_keyframe(info.keyframe_indices[12])  # refused: the drained decoder starts over where it was
        index, frame = reader.next_at_or_after(second)
    assert index >= second
    assert frame_number(frame.to_ndarray(format="bgr24")) == index


def test_sampler_reuses_the_probes_container_once(long_video: Path, make_settings) -> None:
    settings = make_settings()
    info = probe_video(long_video, settings)
    handle = info._probed
    assert handle is not None and handle._container is not None
    indices = [0, 130, 131, 400, 599]
    first = list(sample_frames(long_video, info, indices, settings))
    assert handle._container is None  # taken over (and closed) by the sampler
    again = list(sample_frames(long_video, info, indices, settings))  # opens the file anew
    assert _same_frames(first, again)
    assert [frame_number(frame.image_bgr) for frame in first] == indices


def test_probes_container_is_closed_with_an_unsampled_info(long_video: Path, make_settings) -> None:
    info = probe_video(long_video, make_settings())
    handle = info._probed
    container = handle._container
    del info
    assert handle._container is None
    with pytest.raises(AssertionError):  # PyAV's refusal of a closed container (its message is PyAV's wording)
        container.seek(0)


def test_probes_container_is_not_used_for_another_file(long_video: Path, tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    info = probe_video(long_video, settings)
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(long_video.read_bytes())
    frames = list(sample_frames(copy, info, [0, 300], settings))
    assert info._probed._container is None
    assert [frame_number(frame.image_bgr) for frame in frames] == [0, 300]


def test_demuxed_probe_keeps_no_container(gop_videos: dict[str, Path], make_settings) -> None:
    assert probe_video(_gop_video(gop_videos, "ts-h264-gop20"), make_settings())._probed is None


def test_truncated_faststart_mp4_is_probed_by_demuxing(tmp_path: Path, make_settings, monkeypatch) -> None:
    """The moov atom up front lists every frame, but the file stops after 60% of them: the index check at the
    stream's end fails, and the probe counts what demuxing finds, as before."""
    settings = make_settings()
    source = _write_gop_video(tmp_path / "faststart.mp4", "libx264", 20, {}, {"movflags": "faststart"})
    data = source.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) * 3 // 5])
    with av.open(str(path)) as container:
        assert len(container.streams.video[0].index_entries) == GOP_FRAME_COUNT
        assert probe.indexed_times(path, container, probe.video_stream(container), settings) is NotIndexed.MISMATCH
    info, frames = _sample(path, settings, 10)
    assert 0 < info.frame_count < GOP_FRAME_COUNT
    assert [frame_number(frame.image_bgr) for frame in frames] == [frame.index for frame in frames]
    _use_plain_path(monkeypatch)
    _assert_same_info(info, probe_video(path, settings))
