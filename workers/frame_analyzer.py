"""Detection of one task's frames, one at a time or a video's several at once: faces, landmarks, crops and
persons, then the result."""

from __future__ import annotations

from collections.abc import Sequence

from facequeue.core.schemas import (
    UPSTREAM_DETECTOR_MODES,
    Appearance,
    DetectOptions,
    DetectorInfo,
    DetectResult,
    MediaInfo,
    Person,
)
from facequeue.core.settings import Settings
from facequeue.core.storage import MediaStorage, crop_key
from workers.crops import crop_jpeg, expanded_region, relative_points
from workers.detectors.fusion import detect_faces_tiled
from workers.detectors.registry import FUSED_DETECTOR, LOCAL_DETECTORS, get_detector, with_min_score
from workers.detectors.routing import detector_for
from workers.identity.embedder import FrameEmbeddings
from workers.identity.persons import StillFrames
from workers.identity.tracking import FaceTracker, FrameDetections
from workers.media.video import SampledFrame
from workers.recognition import FaceRecognition, person_matches
from workers.results import face_frame, landmarks_str, seed_landmarks
from workers.vision import Face, in_file_pixels, largest_face


def needs_file_pixels(options: DetectOptions) -> bool:
    """Whether the analysis needs every pixel of a still image, not a JPEG decoded reduced to the working size:
    tiles run at native resolution, crops and person thumbnails are cut from the image, 90-point shapes fit
    FaceMesh to it, and an upstream may be sent the URL and answer in the file's pixels."""
    return (
        options.tiling
        or options.return_face_url
        or options.persons
        or options.landmarks == "90"
        or options.detector in UPSTREAM_DETECTOR_MODES
        or options.index is not None
        or options.search is not None
    )


class FrameAnalyzer:
    """Detects faces frame by frame and keeps what the result needs; frames themselves are dropped."""

    def __init__(
        self,
        task_id: str,
        options: DetectOptions,
        settings: Settings,
        storage: MediaStorage,
        video: bool,
        frame_urls: tuple[str, ...],
        recognition: FaceRecognition | None = None,
    ):
        self.task_id = task_id
        self.options = options
        self.settings = settings
        self.storage = storage
        self.frame_urls = frame_urls
        self.max_side = options.max_side or settings.detector_max_side
        choice = options.detector or settings.default_detector
        # 90-point shapes need FaceMesh on our own detections, and tiles our own detector: those stay local
        local_only = choice in LOCAL_DETECTORS or options.landmarks == "90" or options.tiling
        # Tiling is YuNet's, and always fuses BlazeFace in on the whole frame; elsewhere FACEQUEUE_DETECTOR_FUSION
        # decides for YuNet
        local = get_detector(FUSED_DETECTOR if options.tiling else LOCAL_DETECTORS.get(choice))
        if options.min_score is not None:
            local = with_min_score(local, options.min_score)
        self.router = detector_for("local" if local_only else choice, settings, local=local)
        self.faces_obj: dict = {}
        self.scores: dict[str, list[float]] = {}
        self.crop_keys: dict[str, list[str]] | None = {} if options.return_face_url else None
        self.shapes: dict | None = {} if options.landmarks == "90" else None
        self.embeddings = FrameEmbeddings()
        embed = self.embeddings.embed if (video or (options.persons and len(options.frame_urls) > 1)) else None
        self.tracker = FaceTracker(embed, same_person=settings.person_match_threshold) if video else None
        self.stills = StillFrames(embed, settings.person_match_threshold) if not video else None
        self.person_crops: dict[int, bytes] = {}  # id(face) -> JPEG of its expanded region
        self.recognition = recognition

    def add(self, frame: SampledFrame) -> None:
        faces, shapes = self._faces(
            frame.image_bgr, self.frame_urls[frame.index] if frame.index < len(self.frame_urls) else None
        )
        self._record(frame, faces, shapes)

    def add_frames(self, frames: Sequence[SampledFrame]) -> None:
        """A video's frames, in order, through the detector at once; with tiles or 90-point shapes, frame by frame."""
        if len(frames) == 1 or self.options.tiling or self.options.landmarks == "90":
            for frame in frames:
                self.add(frame)
            return
        found = self.router.detect_frames([frame.image_bgr for frame in frames], self.max_side)
        for frame, faces in zip(frames, found, strict=True):
            self._record(frame, largest_face(faces) if self.options.single_face else faces, None)

    def _record(self, frame: SampledFrame, faces: list[Face], shapes: list | None) -> None:
        image = frame.image_bgr
        self.embeddings.next_frame()
        if frame.scale != 1:  # a reduced JPEG (only when nothing below needs the file's pixels)
            faces = in_file_pixels(faces, frame.scale, *frame.size)
        key = str(frame.index)
        entry = face_frame(faces, frame.time_s)
        self.scores[key] = [round(face.score, 4) for face in faces]
        if self.shapes is not None:
            self.shapes[key] = shapes
        if self.crop_keys is not None:
            entry = self._with_crops(key, entry, image, faces)
        timestamp = frame.time_s or 0.0
        if self.tracker is not None:
            tracks = self.tracker.update(FrameDetections(frame.index, timestamp, image, faces))
            entry = entry.model_copy(update={"removed": tracks.removed})
        elif self.options.persons:
            self.stills.add(frame.index, timestamp, image, faces)
        if self.recognition is not None:
            self.recognition.add(key, image, faces, self.embeddings.embed)
        if self.options.persons:
            height, width = image.shape[:2]
            for face in faces:
                region = expanded_region(face, self.options.expand_ratio, width, height)
                self.person_crops[id(face)] = crop_jpeg(image, region)
        self.faces_obj[key] = entry

    def _faces(self, image, source_url: str | None) -> tuple[list[Face], list | None]:
        if self.options.landmarks != "90":
            if self.options.tiling:
                fused = self.router.local  # YuNet on the frame and its tiles, BlazeFace on the frame
                faces = detect_faces_tiled(
                    fused.primary, image, self.max_side, fusion=fused.fusion, batch=self.settings.frame_batch
                )
            else:
                faces = self.router.detect(image, self.max_side, source_url)
            return (largest_face(faces) if self.options.single_face else faces), None
        from workers.landmarks.analyze import ALL_FACES, LARGEST_FACE, analyze_face_shapes
        from workers.landmarks.facemesh import get_landmarkers
        from workers.landmarks.shape90 import face_shape, five_points

        mesh, iris = get_landmarkers()
        mode = LARGEST_FACE if self.options.single_face else ALL_FACES
        found = analyze_face_shapes(
            image, self.router.local, mesh, iris, mode, self.options.need_rotate_detection, self.max_side
        )
        # FaceMesh's eyes, nose and mouth are far closer to the truth than YuNet's (NME 0.06 vs 0.15)
        faces = [
            Face(shape.face.box, five_points(shape.mesh.points, shape.pupils), shape.face.score) for shape in found
        ]
        return faces, [face_shape(shape.mesh.points, shape.pupils) for shape in found]

    def _with_crops(self, key: str, entry, image, faces: list[Face]):
        height, width = image.shape[:2]
        regions, keys, relative = [], [], []
        for position, face in enumerate(faces):
            region = expanded_region(face, self.options.expand_ratio, width, height)
            storage_key = crop_key(self.task_id, f"frame-{key}-face-{position}")
            self.storage.put_bytes(storage_key, crop_jpeg(image, region), "image/jpeg")
            regions.append(region)
            keys.append(storage_key)
            relative.append(landmarks_str(relative_points(seed_landmarks(face), region)))
        self.crop_keys[key] = keys
        return entry.model_copy(update={"crop_region": regions, "crop_landmarks": relative})

    def _persons(self) -> list[Person] | None:
        if not self.options.persons:
            return None
        found = self.tracker.persons()[0] if self.tracker is not None else self.stills.persons()
        persons = []
        for person in found:
            storage_key = crop_key(self.task_id, person.person_id)
            self.storage.put_bytes(storage_key, self.person_crops[id(person.face.face)], "image/jpeg")
            persons.append(
                Person(
                    person_id=person.person_id,
                    index=person.index,
                    face_key=storage_key,
                    bbox=list(person.bbox),
                    confidence=round(person.confidence, 4),
                    appearances=[
                        Appearance(timestamp=a.timestamp, frame_idx=a.frame_idx, bbox=list(a.bbox))
                        for a in person.appearances
                    ],
                    first_seen=person.first_seen,
                    last_seen=person.last_seen,
                )
            )
        return persons

    def result(self, media: MediaInfo) -> DetectResult:
        persons = self._persons()
        if persons is not None and self.recognition is not None:
            self.recognition.keep_persons(persons, self.faces_obj)
        matches = self.recognition.matches() if self.recognition is not None else None
        by_person = None
        if persons is not None and matches is not None:
            by_person = person_matches(persons, self.faces_obj, matches, self.options.search.max_matches)
        return DetectResult(
            faces_obj=self.faces_obj,
            scores=self.scores,
            media=media,
            detector=DetectorInfo(
                name=self.router.served_by,
                model_version=self.router.model_version,
                max_side=self.max_side,
                upstream_frames=self.router.upstream_frames,
            ),
            frame_count=len(self.faces_obj),
            crop_keys=self.crop_keys,
            face_shape_set=self.shapes,
            persons=persons,
            index=self.recognition.report() if self.recognition is not None else None,
            matches=matches,
            person_matches=by_person,
        )
