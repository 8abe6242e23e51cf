"""(b) Sampling N evenly spaced frames: facequeue's sampler against three plain ways of getting them.

Strategies, each converting every wanted frame to BGR as the service does:
* facequeue: probe_video + sample_frames, the service's own code; its time includes the probe (the MP4 header's
  sample table where it has one, else a demux of every packet), also shown alone;
* sequential: PyAV threaded decode from the start, stopping after the last wanted frame;
* keyframe seek: for each wanted frame, seek to the keyframe at or before it, decode up to it (threaded);
* read all: cv2.VideoCapture reads every frame (the same work for any N, so it is timed once per file).
The baselines are handed the wanted indices and frame timestamps for free (from an untimed probe).

Files: the shared 1080p and 720p clips (one keyframe each) and a 10-minute 720p clip with a keyframe every
2 s that this benchmark builds from the 720p clips (looped) and keeps in bench/out/.
"""

from __future__ import annotations

import bisect
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import cv2
import matplotlib.pyplot as plt
import numpy as np

from bench.data import CLIP_1080P, CLIPS_720P, VIDEOS, require_testdata
from bench.options import RunOptions
from bench.report import Section, Table, Target
from facequeue.core.settings import get_settings
from workers.media.video import plan_sample_indices, probe_video, sample_frames
from workers.media.video.mp4_index import IndexedTimes, indexed_times
from workers.media.video.probe import video_stream

NUM_FRAMES = (5, 20, 100)
QUICK_NUM_FRAMES = (5,)
LONG_CLIP_SECONDS = 600
QUICK_LONG_CLIP_SECONDS = 10
KEYFRAME_SECONDS = 2
MAX_SLOWDOWN = 1.1  # facequeue against the better of sequential and keyframe seek
READ_ALL_SPEEDUP = 10.0  # for 100 samples of the long clip
REPEAT_UNDER_SECONDS = 2.0  # runs shorter than this are repeated and the median taken

Strategy = Callable[[Path, Sequence[int], np.ndarray], list[int]]


def run(options: RunOptions) -> Section:
    require_testdata()
    counts = QUICK_NUM_FRAMES if options.quick else NUM_FRAMES
    seconds = QUICK_LONG_CLIP_SECONDS if options.quick else LONG_CLIP_SECONDS
    files = (
        [VIDEOS / name for name in CLIPS_720P[:1]]
        if options.quick
        else [VIDEOS / CLIP_1080P, *(VIDEOS / name for name in CLIPS_720P)]
    )
    files.append(build_long_clip(options.cache_dir, seconds))
    section = Section("video", "(b) video sampling", options.command("video"))
    rows, results = [], {}
    for path in files:
        results[path.name] = measure_file(path, counts, repeat=not options.quick)
        rows += _rows(path.name, results[path.name])
        section.targets += _targets(path.name, results[path.name], long_clip=path == files[-1])
    section.tables.append(
        Table(
            [
                "file",
                "frames, keyframes",
                "N",
                "facequeue s",
                "of it probe s",
                "sequential s",
                "keyframe seek s",
                "read all s",
                "facequeue / best of seq., seek",
                "read all / facequeue",
            ],
            rows,
            "seconds to get N evenly spaced frames as BGR arrays (median of 3 when a run takes under 2 s)",
        )
    )
    section.notes.append(
        "read all decodes every frame whatever N is, so it is timed once per file and shown for each N; "
        "facequeue's time includes its probe, the baselines get indices and timestamps for free"
    )
    section.notes.append(_probe_note(results))
    section.figures["times"] = _plot(results, counts)
    return section


def measure_file(path: Path, counts: Sequence[int], repeat: bool) -> dict:
    info = probe_video(path, get_settings())
    result = {
        "frames": info.frame_count,
        "keyframes": len(info.keyframe_indices),
        "probe": _probe_seconds(path),
        "probe_source": _probe_source(path),
        "decoded_share": {},
        "by_n": {},
    }
    read_all_s = _timed(read_all, path, plan_sample_indices(info.frame_count, max(counts)), info.frame_pts, repeat)
    for count in counts:
        wanted = plan_sample_indices(info.frame_count, count)
        result["by_n"][count] = {
            "facequeue": _timed(facequeue, path, wanted, info.frame_pts, repeat),
            "sequential": _timed(sequential, path, wanted, info.frame_pts, repeat),
            "keyframe seek": _timed(keyframe_seek, path, wanted, info.frame_pts, repeat),
            "read all": read_all_s,
        }
        result["decoded_share"][count] = _decoded_share(info.keyframe_indices, wanted, info.frame_count)
    return result


def _probe_seconds(path: Path) -> float:
    """facequeue's probe alone, warm (the file already read once), median of 3."""
    times = []
    for _ in range(3):
        started = time.perf_counter()
        probe_video(path, get_settings())
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _probe_source(path: Path) -> str:
    """Where facequeue's probe got the frame timestamps: the header's sample table or every packet."""
    with av.open(str(path)) as container:
        indexed = indexed_times(path, container, video_stream(container), get_settings())
    return "header index" if isinstance(indexed, IndexedTimes) else "demux"


def _probe_note(results: dict[str, dict]) -> str:
    by_source: dict[str, list[str]] = {}
    for name, result in results.items():
        by_source.setdefault(result["probe_source"], []).append(name)
    parts = [
        f"{source} for {'all files' if len(names) == len(results) else ', '.join(names)}"
        for source, names in sorted(by_source.items())
    ]
    return "facequeue's probe read the frame timestamps from: " + "; ".join(parts)


def _decoded_share(keyframes: Sequence[int], wanted: Sequence[int], frame_count: int) -> float:
    """Share of all frames a keyframe-seeking sampler must decode at least: each keyframe up to its sample."""
    first_needed = {}
    for target in wanted:
        keyframe = keyframes[bisect.bisect_right(keyframes, target) - 1]
        first_needed[keyframe] = max(first_needed.get(keyframe, keyframe), target)
    return sum(last - first + 1 for first, last in first_needed.items()) / frame_count


def _timed(strategy: Strategy, path: Path, wanted: Sequence[int], frame_pts: np.ndarray, repeat: bool) -> float:
    times = []
    while not times or (repeat and len(times) < 3 and times[0] < REPEAT_UNDER_SECONDS):
        started = time.perf_counter()
        got = strategy(path, wanted, frame_pts)
        times.append(time.perf_counter() - started)
        if strategy is not read_all and got != list(wanted):
            raise AssertionError(f"{strategy.__name__} on {path.name} returned other frames than asked")
    return statistics.median(times)


def facequeue(path: Path, wanted: Sequence[int], frame_pts: np.ndarray) -> list[int]:
    settings = get_settings()
    info = probe_video(path, settings)
    indices = plan_sample_indices(info.frame_count, len(wanted))
    got = []
    for frame in sample_frames(path, info, indices, settings):
        got.append(frame.index)
        # Drop each BGR array before asking for the next, as the baselines do: holding the previous one while
        # the next is allocated makes glibc map fresh pages for every large array (~10x the page faults, 10-20%
        # slower at 720p-1080p), which would be timed as the sampler's.
        del frame
    return got


def sequential(path: Path, wanted: Sequence[int], frame_pts: np.ndarray) -> list[int]:
    targets, got = set(wanted), []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index in targets:
                frame.to_ndarray(format="bgr24")
                got.append(index)
            if index >= wanted[-1]:
                break
    return got


def keyframe_seek(path: Path, wanted: Sequence[int], frame_pts: np.ndarray) -> list[int]:
    got = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for target in wanted:
            container.seek(int(frame_pts[target]), stream=stream, backward=True)  # lands on a keyframe
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= frame_pts[target]:
                    frame.to_ndarray(format="bgr24")
                    got.append(target)
                    break
    return got


def read_all(path: Path, wanted: Sequence[int], frame_pts: np.ndarray) -> list[int]:
    targets, got = set(wanted), []
    capture = cv2.VideoCapture(str(path))
    index = 0
    while capture.read()[0]:
        if index in targets:
            got.append(index)
        index += 1
    capture.release()
    return got


def build_long_clip(cache_dir: Path, seconds: int) -> Path:
    """A 720p H.264 clip of ``seconds`` looping the shared 720p clips, a keyframe every 2 s; built once."""
    path = cache_dir / f"loop720p-{seconds}s-gop{KEYFRAME_SECONDS}s.mp4"
    if path.exists():
        return path
    frames, fps = _decoded_frames([VIDEOS / name for name in CLIPS_720P])
    partial = path.with_suffix(".partial.mp4")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with av.open(str(partial), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        stream.codec_context.gop_size = KEYFRAME_SECONDS * fps
        # a fixed 2 s keyframe interval: no extra keyframes at scene cuts (the loop points)
        stream.options = {"preset": "veryfast", "sc_threshold": "0", "keyint_min": str(KEYFRAME_SECONDS * fps)}
        for index in range(seconds * fps):
            source = frames[index % len(frames)]
            frame = av.VideoFrame.from_ndarray(source.to_ndarray(), format=source.format.name)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    partial.rename(path)
    return path


def _decoded_frames(paths: list[Path]) -> tuple[list[av.VideoFrame], int]:
    frames, rates = [], set()
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rates.add(round(float(stream.average_rate)))
            frames += list(container.decode(stream))
    if len(rates) != 1:
        raise ValueError(f"the 720p clips must share one frame rate, got {rates}")
    return frames, rates.pop()


def _rows(name: str, result: dict) -> list[list[object]]:
    rows = []
    for count, times in result["by_n"].items():
        best = min(times["sequential"], times["keyframe seek"])
        rows.append(
            [
                name,
                f"{result['frames']}, {result['keyframes']}",
                count,
                times["facequeue"],
                result["probe"],
                times["sequential"],
                times["keyframe seek"],
                times["read all"],
                times["facequeue"] / best,
                times["read all"] / times["facequeue"],
            ]
        )
    return rows


def _targets(name: str, result: dict, long_clip: bool) -> list[Target]:
    targets = []
    for count, times in result["by_n"].items():
        best_name = min(("sequential", "keyframe seek"), key=times.get)
        ratio = times["facequeue"] / times[best_name]
        targets.append(
            Target(
                f"{name}, N={count}: facequeue <= {MAX_SLOWDOWN}x the better of sequential and seek",
                f"{ratio:.2f}x: {times['facequeue']:.3f} s vs {best_name} {times[best_name]:.3f} s",
                ratio <= MAX_SLOWDOWN,
                f"facequeue's probe ({result['probe_source']}) takes {result['probe']:.3f} s of its "
                f"{times['facequeue']:.3f} s; the baselines are given indices and timestamps",
            )
        )
    if long_clip and 100 in result["by_n"]:
        times = result["by_n"][100]
        speedup = times["read all"] / times["facequeue"]
        targets.append(
            Target(
                f"{name}, N=100: facequeue >= {READ_ALL_SPEEDUP:.0f}x faster than reading every frame",
                f"{speedup:.1f}x: {times['facequeue']:.2f} s vs {times['read all']:.2f} s",
                speedup >= READ_ALL_SPEEDUP,
                f"each sample decodes from the keyframe before it, so even a perfect seeker decodes "
                f"{result['decoded_share'][100]:.0%} of all frames here, plus a seek and a decoder flush per sample",
            )
        )
    return targets


def _plot(results: dict[str, dict], counts: Sequence[int]):
    figure, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    strategies = ("facequeue", "sequential", "keyframe seek", "read all")
    width = 0.8 / len(strategies)
    for axis, (name, result) in zip(axes[0], results.items(), strict=True):
        positions = np.arange(len(counts))
        for offset, strategy in enumerate(strategies):
            values = [result["by_n"][count][strategy] for count in counts]
            axis.bar(positions + offset * width, values, width, label=strategy)
        axis.set_xticks(positions + width * (len(strategies) - 1) / 2, [f"N={count}" for count in counts])
        axis.set_yscale("log")
        axis.set_title(f"{name}\n{result['frames']} frames, {result['keyframes']} keyframes", fontsize=8)
        axis.set_ylabel("seconds")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    return figure
