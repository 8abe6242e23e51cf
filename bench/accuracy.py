"""(d) Accuracy on the shared ground truth, with the service's own detection path and default settings.

* WIDER-style AP (bench.matching's port of the official evaluation) on the 4 WIDER images (easy, medium,
  hard) and on the 9 dlib photos (every labelled face counts; their unlabelled background faces count as
  false positives), with detection speed (img/s, decoding excluded), for: the default path (YuNet), YuNet
  fused with BlazeFace full range, BlazeFace alone, max_side 640 (MODELS.md's reference), and tiling
  (`tiling: true`: YuNet tiles + BlazeFace on the whole frame, as the service runs it, and YuNet tiles alone),
  and `detector: "accurate"` (CenterFace at its default threshold, through the same routing as a task);
* 6-point NME over the inter-ocular distance on the dlib photos' 68-point truth, for YuNet's points and for
  the FaceMesh-refined ones;
* identity clustering (StillFrames) on the photos of one labelled person: pairwise precision and recall;
* persons found (FaceTracker over the sampled frames) in every single-face clip: must be 1.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations

import matplotlib.pyplot as plt
import numpy as np

from bench.data import (
    DLIB_SETTING,
    SINGLE_FACE_CLIPS,
    VIDEOS,
    WIDER_SETTINGS,
    LabelledImage,
    labelled_images,
    labelled_photos,
)
from bench.matching import ImageDetections, PRCurve, match_one_to_one, wider_evaluation
from bench.options import RunOptions
from bench.report import Section, Table, Target
from facequeue.core.settings import Settings, get_settings
from workers.detectors.centerface import UPSCALE
from workers.detectors.fusion import detect_faces_tiled
from workers.detectors.registry import FUSED_DETECTOR, LOCAL_DETECTORS, get_detector, get_fusion
from workers.detectors.routing import detector_for
from workers.identity.embedder import get_embedder
from workers.identity.persons import StillFrames
from workers.identity.tracking import FaceTracker, FrameDetections
from workers.landmarks.analyze import ALL_FACES, analyze_face_shapes
from workers.landmarks.facemesh import get_landmarkers
from workers.landmarks.shape90 import five_points
from workers.media.image import decode_image
from workers.media.video import plan_sample_indices, probe_video, sample_frames
from workers.vision import Face, detect_faces, six_points

REFERENCE_MAX_SIDE = 640  # MODELS.md's reference row: 0.42 / 0.56 / 0.55
HARD_AP_TARGET = 0.80
ACCURATE_HARD_AP_TARGET = 0.85
TILED_HARD_AP_TARGET = 0.85
TILED_EASY_AP_TARGET = 0.70
DLIB_AP_TARGET = 0.99
NME_TARGET = 0.08
# Pairs a detection with a labelled face for its landmarks; dlib's boxes are tighter than YuNet's.
LANDMARK_MATCH_IOU = 0.4
CLIP_SAMPLES = 20
QUICK_PHOTOS = 12
QUICK_CLIPS = 1
QUICK_CLIP_SAMPLES = 5
TIMING_RUNS = 3

# How a configuration detects (see `detect`).
DEFAULT = "default"  # the service's default path: YuNet through routing
BLAZEFACE = "blazeface"  # BlazeFace full range alone, raw scores from 0.25 (reference)
TILED = "tiled"  # the service's tiling mode: YuNet on the frame and tiles, BlazeFace fused on the frame
TILED_YUNET = "tiled yunet"  # tiling with YuNet alone (before BlazeFace fusion)
ACCURATE = "accurate"  # detector "accurate": CenterFace through routing, as a task runs it


@dataclass
class Accuracy:
    curves: dict[str, dict[str, PRCurve]] = field(default_factory=dict)  # configuration -> setting -> curve
    speed: dict[str, float] = field(default_factory=dict)  # configuration -> images per second (detection only)
    default_label: str = ""  # the configurations the service runs, for the targets
    tiled_label: str = ""
    accurate_label: str = ""
    nme: dict[str, list[float]] = field(default_factory=dict)  # points -> per matched face
    faces_with_landmarks: int = 0
    precision_recall: tuple[float, float, int, int, int] = (0.0, 0.0, 0, 0, 0)  # p, r, photos, people, persons
    persons_per_clip: dict[str, int] = field(default_factory=dict)


def run(options: RunOptions) -> Section:
    settings = get_settings()
    images = labelled_images()
    result = Accuracy()
    reference = settings.model_copy(update={"detector_max_side": REFERENCE_MAX_SIDE})
    side = settings.detector_max_side
    result.default_label = f"default: YuNet (max_side {side})"
    result.tiled_label = f"tiling: YuNet tiles + BlazeFace fusion (max_side {side})"
    threshold = settings.detector_accurate_score_threshold
    result.accurate_label = f"accurate: CenterFace {UPSCALE}x, score >= {threshold} (max_side {side})"
    configurations = {
        result.default_label: (settings, DEFAULT),
        result.accurate_label: (settings, ACCURATE),
        f"YuNet + BlazeFace fusion (max_side {side})": (settings, FUSED_DETECTOR),
        "BlazeFace full range alone (reference, raw score >= 0.25)": (settings, BLAZEFACE),
        f"max_side {REFERENCE_MAX_SIDE} (reference)": (reference, DEFAULT),
        result.tiled_label: (settings, TILED),
        f"tiling: YuNet alone (max_side {side})": (settings, TILED_YUNET),
        f"tiling: YuNet tiles + BlazeFace fusion (max_side {REFERENCE_MAX_SIDE})": (reference, TILED),
    }
    for label, (configured, how) in configurations.items():
        runs = 1 if options.quick else TIMING_RUNS
        result.curves[label], result.speed[label] = evaluate_ap(images, configured, how, runs)
    result.nme, result.faces_with_landmarks = landmark_errors([image for image in images if not image.is_wider])
    photos = labelled_photos()
    result.precision_recall = identity_clustering(photos[:QUICK_PHOTOS] if options.quick else photos)
    clips = SINGLE_FACE_CLIPS[:QUICK_CLIPS] if options.quick else SINGLE_FACE_CLIPS
    samples = QUICK_CLIP_SAMPLES if options.quick else CLIP_SAMPLES
    result.persons_per_clip = {clip: persons_in_clip(clip, samples) for clip in clips}
    return _section(options, result, samples)


def detect(image_bgr: np.ndarray, settings: Settings, how: str = DEFAULT) -> list[Face]:
    """Faces as the pipeline finds them for a local task (the settings' max_side), or as `how` says."""
    max_side = settings.detector_max_side
    if how == TILED:
        return detect_faces_tiled(get_detector("yunet"), image_bgr, max_side, fusion=get_fusion())
    if how == TILED_YUNET:
        return detect_faces_tiled(get_detector("yunet"), image_bgr, max_side)
    if how in (FUSED_DETECTOR, BLAZEFACE):
        return detect_faces(get_detector(how), image_bgr, max_side)
    if how == ACCURATE:
        return detector_for("local", settings, local=get_detector(LOCAL_DETECTORS[how])).detect(image_bgr, max_side)
    return detector_for("local", settings, local=get_detector()).detect(image_bgr, max_side)


def evaluate_ap(
    images: tuple[LabelledImage, ...], settings: Settings, how: str, runs: int = TIMING_RUNS
) -> tuple[dict[str, PRCurve], float]:
    """PR curves per setting, and images per second of detection alone (decoded frames, models loaded; each
    image's fastest of `runs` runs, so that other processes on the machine disturb the figure less)."""
    decoded = {image: decode_image(image.path, settings) for image in images}
    detect(decoded[images[0]], settings, how)  # loads the models outside the timing
    found, elapsed = {}, 0.0
    for image, bgr in decoded.items():
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            faces = detect(bgr, settings, how)
            times.append(time.perf_counter() - start)
        elapsed += min(times)
        found[image] = (np.array([face.box for face in faces]).reshape(-1, 4), np.array([face.score for face in faces]))
    curves = {}
    for setting in (*WIDER_SETTINGS, DLIB_SETTING):
        evaluated = [
            ImageDetections(*found[image], image.boxes, image.counted[setting])
            for image in images
            if setting in image.counted
        ]
        curves[setting] = wider_evaluation(evaluated)
    return curves, len(images) / max(elapsed, 1e-9)


def landmark_errors(images: list[LabelledImage]) -> tuple[dict[str, list[float]], int]:
    """6-point NME per labelled face found: YuNet's own points and the FaceMesh-refined ones."""
    settings = get_settings()
    mesh, iris = get_landmarkers()
    errors: dict[str, list[float]] = {"YuNet points": [], "FaceMesh-refined points": []}
    labelled = 0
    for image in images:
        bgr = decode_image(image.path, settings)
        labelled += len(image.boxes)
        faces = detect(bgr, settings)
        shapes = analyze_face_shapes(bgr, get_detector(), mesh, iris, ALL_FACES, False, settings.detector_max_side)
        yunet = match_one_to_one(np.array([f.box for f in faces]), image.boxes, LANDMARK_MATCH_IOU)
        refined = match_one_to_one(np.array([s.face.box for s in shapes]), image.boxes, LANDMARK_MATCH_IOU)
        for truth, index in yunet.items():
            errors["YuNet points"].append(six_point_nme(six_points(faces[index].landmarks), image.landmarks68[truth]))
        for truth, index in refined.items():
            points = six_points(five_points(shapes[index].mesh.points, shapes[index].pupils))
            errors["FaceMesh-refined points"].append(six_point_nme(points, image.landmarks68[truth]))
    return errors, labelled


def six_point_nme(points: np.ndarray, landmarks68: np.ndarray) -> float:
    """Mean distance of the seed's 6 points to iBUG's (eye centres 36-41 / 42-47, nose tip 30, mouth corners
    48 / 54 and their midpoint), over the inter-ocular distance (between the eye centres)."""
    eyes = np.array([landmarks68[36:42].mean(axis=0), landmarks68[42:48].mean(axis=0)])
    corners = landmarks68[[48, 54]]
    truth = np.vstack([eyes, landmarks68[30], corners.mean(axis=0), corners])
    return float(np.linalg.norm(points - truth, axis=1).mean() / np.linalg.norm(eyes[1] - eyes[0]))


def identity_clustering(photos: list) -> tuple[float, float, int, int, int]:
    """Pairwise precision and recall of the persons found across the photos (each photo's largest face)."""
    settings = get_settings()
    stills = StillFrames(get_embedder().embed, settings.person_match_threshold)
    for frame_idx, (path, _) in enumerate(photos):
        image = decode_image(path, settings)
        stills.add(frame_idx, float(frame_idx), image, detect(image, settings))
    persons = stills.persons()
    largest = {}  # frame -> (area, person) of its largest face
    for person in persons:
        for seen in person.appearances:
            x1, y1, x2, y2 = seen.bbox
            largest[seen.frame_idx] = max(
                largest.get(seen.frame_idx, (-1, "")), ((x2 - x1) * (y2 - y1), person.person_id)
            )
    found = [largest.get(i, (0, f"no face {i}"))[1] for i in range(len(photos))]
    truth = [identity for _, identity in photos]
    pairs = [(truth[i] == truth[j], found[i] == found[j]) for i, j in combinations(range(len(photos)), 2)]
    both = sum(same and merged for same, merged in pairs)
    precision = both / max(1, sum(merged for _, merged in pairs))
    recall = both / max(1, sum(same for same, _ in pairs))
    return precision, recall, len(photos), len(set(truth)), len(persons)


def persons_in_clip(name: str, samples: int) -> int:
    settings = get_settings()
    tracker = FaceTracker(get_embedder().embed, same_person=settings.person_match_threshold)
    path = VIDEOS / name
    info = probe_video(path, settings)
    for frame in sample_frames(path, info, plan_sample_indices(info.frame_count, samples), settings):
        faces = detect(frame.image_bgr, settings)
        tracker.update(FrameDetections(frame.index, frame.time_s, frame.image_bgr, faces))
    return len(tracker.persons()[0])


def _section(options: RunOptions, result: Accuracy, samples: int) -> Section:
    section = Section("accuracy", "(d) accuracy on ground_truth_faces.json", options.command("accuracy"))
    settings_order = (*WIDER_SETTINGS, DLIB_SETTING)
    rows = [
        [label, *(curves[s].ap for s in settings_order), f"{result.speed[label]:.1f}"]
        for label, curves in result.curves.items()
    ]
    section.tables.append(
        Table(
            ["configuration", "WIDER easy AP", "WIDER medium AP", "WIDER hard AP", "dlib AP", "img/s"],
            rows,
            "official WIDER evaluation ported (IoU 0.5, 1,000 thresholds); 4 WIDER val images, 9 dlib photos; "
            "img/s: detection alone over the 13 images (decoded, models loaded), on this machine",
        )
    )
    nme_rows = [
        [name, len(values), f"{result.faces_with_landmarks}", float(np.mean(values)), float(np.median(values))]
        for name, values in result.nme.items()
    ]
    section.tables.append(
        Table(
            ["points", "faces matched", "labelled faces", "mean NME", "median NME"],
            nme_rows,
            "6-point NME over inter-ocular distance, dlib photos",
        )
    )
    precision, recall, photos, people, persons = result.precision_recall
    section.tables.append(
        Table(
            ["photos", "people", "persons found", "pairwise precision", "pairwise recall"],
            [[photos, people, persons, precision, recall]],
            "identity clustering (StillFrames, SFace)",
        )
    )
    section.tables.append(
        Table(
            ["clip", "persons"],
            [[clip, count] for clip, count in result.persons_per_clip.items()],
            f"persons per single-face clip, {samples} sampled frames (FaceTracker)",
        )
    )
    section.targets += _targets(result)
    section.notes.append(
        "MODELS.md reference (YuNet int8): at 640 px 0.42 / 0.56 / 0.55, native 0.53 / 0.72 / 0.82; it does not state "
        f"its score threshold, this run keeps the service's ({get_settings().detector_score_threshold})"
    )
    section.figures["pr"] = _plot(next(iter(result.curves.items())))
    return section


def _targets(result: Accuracy) -> list[Target]:
    """Each target on the configuration the service runs: the default path, and tiling mode (with its fusion)."""
    default = result.curves[result.default_label]
    tiled = result.curves[result.tiled_label]
    accurate = result.curves[result.accurate_label]
    fused_label = next(label for label in result.curves if label.startswith("YuNet + BlazeFace"))
    fused = result.curves[fused_label]
    alone = next(curves for label, curves in result.curves.items() if label.startswith("BlazeFace"))
    threshold = get_settings().detector_score_threshold
    refined = float(np.mean(result.nme["FaceMesh-refined points"]))
    wrong = {clip: count for clip, count in result.persons_per_clip.items() if count != 1}
    return [
        Target(
            f"default WIDER hard AP >= {HARD_AP_TARGET}",
            f"{default['hard'].ap:.3f}",
            default["hard"].ap >= HARD_AP_TARGET,
            f"recall at the lowest score kept is {default['hard'].recall[-1]:.3f}: the score threshold ({threshold}) "
            "ends the curve there. Measured by hand with YuNet alone: threshold 0.55 / 0.5 / 0.45 gives hard AP "
            "0.785 / 0.796 / 0.811, but from 0.55 down it adds two real but unlabelled background faces to one "
            "dlib photo (2008_002079, scores 0.55 and 0.57; tests/test_real_faces.py allows 1 extra per photo), "
            "and at 0.45 the WIDER detections matching no labelled face go from 14 to 40. No verifier separates "
            "them: FaceMesh presence is ~0 on faces under 30 px, labelled or not, and BlazeFace does not see "
            "them. Mirror-image test-time augmentation (max of the two scores, boxes averaged) reaches ~0.80 at "
            "threshold 0.57 with 1 extra per photo, but runs YuNet twice (2x the cost of the default path)",
        ),
        Target(
            f"tiling WIDER hard AP >= {TILED_HARD_AP_TARGET} and easy AP >= {TILED_EASY_AP_TARGET}",
            f"hard {tiled['hard'].ap:.3f}, easy {tiled['easy'].ap:.3f}",
            tiled["hard"].ap >= TILED_HARD_AP_TARGET and tiled["easy"].ap >= TILED_EASY_AP_TARGET,
            f"BlazeFace full range does not find the Parade crowd's profile and upturned faces either: alone it "
            f"scores easy AP {alone['easy'].ap:.3f} (whole frame: 3 of the 19 easy faces at IoU >= 0.5, all also "
            "found by YuNet; on 256-384 px tiles easy AP <= 0.21), so fusing it changes no WIDER figure. Measured "
            f"by hand on this row: recall ends at {tiled['easy'].recall[-1]:.3f} (11 of 19 easy faces); the first "
            "8 outrank every false positive, the next 3 come after 4, 10 and 16 of them (detections matching no "
            "labelled face at IoU 0.5; 14 of 34 are tiny faces boxed at IoU 0.3-0.5). Of the 8 missed, 3 cannot "
            "be found (back of a head, hair only, a 13 px sliver at the edge), so easy AP <= 16/19 even when "
            "perfectly ranked. Hard: at YuNet score >= 0.05 tiling tops out at 0.845. YuNet on the frame rotated "
            "by +-30 degrees finds 2 more easy faces from 0.6 up (easy 0.60), at 3x the cost",
        ),
        Target(
            f"default dlib AP >= {DLIB_AP_TARGET}",
            f"{default[DLIB_SETTING].ap:.3f}; fused with BlazeFace {fused[DLIB_SETTING].ap:.3f}",
            default[DLIB_SETTING].ap >= DLIB_AP_TARGET,
            f"one labelled face (2007_007763.jpg, box 381,89 45x44, a turned head) is found at score 0.91 but "
            "YuNet's box drifts to its far side: IoU 0.49 < 0.5, so recall stops at 42/43; unlabelled background "
            "faces score below every labelled one and cost nothing. Box fusion with BlazeFace (the second row) "
            f"fixes it, at {result.speed[result.default_label]:.1f} -> {result.speed[fused_label]:.1f} img/s; the "
            "default path stays YuNet alone (tiling mode fuses)",
        ),
        Target(
            f"accurate WIDER hard AP >= {ACCURATE_HARD_AP_TARGET} and dlib AP >= {DLIB_AP_TARGET}",
            f"hard {accurate['hard'].ap:.3f}, dlib {accurate[DLIB_SETTING].ap:.3f}",
            accurate["hard"].ap >= ACCURATE_HARD_AP_TARGET and accurate[DLIB_SETTING].ap >= DLIB_AP_TARGET,
            "the frame goes to CenterFace 1.5x enlarged (workers/detectors/centerface.py); measured by hand on the "
            "bare detector, hard AP 0.921 / 0.913 / 0.889 / 0.868 / 0.796 at 0.05 / 0.1 / 0.2 / 0.3 / 0.5, with "
            "229 / 46 / 13 / 8 / 1 detections matching no labelled face on the 9 dlib photos (dlib AP 1.000 "
            "throughout); without the enlargement 0.3 gives 0.791",
        ),
        Target(
            f"6-point NME (FaceMesh-refined) <= {NME_TARGET}",
            f"{refined:.3f}; YuNet's own points {np.mean(result.nme['YuNet points']):.3f}",
            refined <= NME_TARGET,
        ),
        Target(
            "every single-face clip is exactly 1 person",
            f"{len(result.persons_per_clip) - len(wrong)} of {len(result.persons_per_clip)} clips",
            not wrong,
            f"other counts: {wrong}",
        ),
    ]


def _plot(default: tuple[str, dict[str, PRCurve]]):
    label, curves = default
    figure, axis = plt.subplots(figsize=(5, 4))
    for setting, curve in curves.items():
        shown = curve.recall > 0  # thresholds above every detection's score have no precision to show
        axis.plot(curve.recall[shown], curve.precision[shown], label=f"{setting} AP {curve.ap:.3f}")
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title(f"WIDER-style PR curves, {label}", fontsize=9)
    axis.legend(fontsize=8)
    return figure
