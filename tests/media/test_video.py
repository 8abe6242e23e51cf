from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest

from facequeue.errors import ErrorCode, TaskError
from tests.media.numbered_video import HEIGHT, NUMBERED_FORMATS, NUMBERED_FRAME_COUNT, WIDTH, frame_number
from workers.media import video
from workers.media.video import SeekPoint, VideoInfo, plan_sample_indices, plan_seeks, probe_video, sample_frames

SHARED_VIDEOS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "videos"
FPS = 25


def _sample(path: Path, settings, num_frames: int) -> tuple[VideoInfo, list[video.SampledFrame]]:
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
    assert plan_seeks(info.keyframe_indices, [0, 30, 63], video.SEEK_PENALTY_FRAMES) == []


def test_sparse_samples_of_a_long_video_seek(long_video: Path, make_settings) -> None:
    info, frames = _sample(long_video, make_settings(), 10)
    wanted = plan_sample_indices(600, 10)
    seeks = plan_seeks(info.keyframe_indices, wanted, video.SEEK_PENALTY_FRAMES)
    assert info.frame_count == 600
    assert len(seeks) >= 5
    assert all(seek.keyframe <= seek.target and seek.keyframe in info.keyframe_indices for seek in seeks)
    assert [frame.index for frame in frames] == wanted
    assert [frame_number(frame.image_bgr) for frame in frames] == wanted


def test_dense_samples_of_a_long_video_do_not_seek(long_video: Path, make_settings) -> None:
    info = probe_video(long_video, make_settings())
    assert plan_seeks(info.keyframe_indices, plan_sample_indices(600, 100), video.SEEK_PENALTY_FRAMES) == []


def test_seeking_returns_the_same_frames_as_decoding_through(long_video: Path, make_settings, monkeypatch) -> None:
    _, with_seeks = _sample(long_video, make_settings(), 12)
    monkeypatch.setattr(video, "SEEK_PENALTY_FRAMES", 10**9)
    _, sequential = _sample(long_video, make_settings(), 12)
    assert [(f.index, f.time_s) for f in with_seeks] == [(f.index, f.time_s) for f in sequential]
    assert all(np.array_equal(a.image_bgr, b.image_bgr) for a, b in zip(with_seeks, sequential, strict=True))


def test_garbage_is_corrupt(tmp_path: Path, make_settings) -> None:
    path = tmp_path / "garbage.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    error = _error(path, make_settings())
    assert error.code == ErrorCode.CORRUPT_MEDIA
    assert "not a readable video container" in error.detail


def test_truncated_mp4_is_corrupt(long_video: Path, tmp_path: Path, make_settings) -> None:
    # The index (moov) comes last, so the first half of the file holds frames no one can locate.
    data = long_video.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: len(data) // 2])
    assert _error(path, make_settings()).code == ErrorCode.CORRUPT_MEDIA


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
        reader = video._FrameReader(overshooting, container.streams.video[0], info)
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
    assert video.plan_indices_at_rate(frame_count, fps, sample_fps, limit) == expected
