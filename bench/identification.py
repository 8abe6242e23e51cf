"""Identification quality of the product's embeddings on the shared identity set (bench search, part B).

Every photo of one labelled person (bench.data.labelled_photos: group photos, files of several people and videos
left out; the two labels of one woman merged) is decoded as the service decodes it, its faces found by the
service's detector at the settings' max side, and its largest face embedded by SFace (128-d, unit norm). The
similarity of two photos is max(cosine, 0), as search reports it.

* rank-1 identification, leave-one-out: each photo of an identity with >= 2 embedded photos against every other
  photo (other identities' photos, singletons included, are the distractors);
* TAR at FAR 1e-2 and 1e-3 over every pair of photos (genuine: same identity; impostor: different), with the
  threshold that gives each: the pair matches when its similarity is above it;
* the false-match rate (impostor pairs at or above the threshold, as search keeps a face) at 0.3 to 0.6.
"""

from __future__ import annotations

import sys

import numpy as np

from bench.data import TESTDATA, labelled_photos
from bench.report import Section, Table, Target
from facequeue.core.settings import get_settings
from workers.detectors.registry import get_detector
from workers.identity.embedder import get_embedder
from workers.media.image import decode_image
from workers.vision import detect_faces

RANK1_TARGET = 0.98
FARS = (1e-2, 1e-3)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6)  # 0.5: the API's default search threshold


def quality(section: Section) -> None:
    """Part B's tables, target and notes, added to `section`; a note only when the shared data is not there."""
    goal = f"rank-1 identification (leave-one-out, SFace) >= {RANK1_TARGET} on the shared identity set"
    if not TESTDATA.is_dir():
        print(f"search: part B (identification quality) skipped: no shared data at {TESTDATA}", file=sys.stderr)
        section.targets.append(Target(goal, "no shared data", None))
        section.notes.append(f"part B skipped: no shared identity data at {TESTDATA}")
        return
    vectors, identities, missed, unidentifiable = embed_photos()
    similarity = np.maximum(vectors @ vectors.T, 0.0)
    same = identities[:, None] == identities[None, :]
    rank1, probes = rank_one(similarity, same)
    upper = np.triu_indices(len(identities), 1)
    genuine, impostor = similarity[upper][same[upper]], similarity[upper][~same[upper]]
    summary = [
        ["photos embedded (largest face) / identities", f"{len(identities)} / {len(set(identities.tolist()))}"],
        ["photos with no face found (left out)", ", ".join(missed) or "none"],
        ["faces below SFace's identifiable norm (kept)", unidentifiable],
        ["genuine / impostor pairs", f"{len(genuine)} / {len(impostor)}"],
        [f"rank-1, leave-one-out over {probes} photos of identities with >= 2", f"{rank1:.3f}"],
    ]
    for far in FARS:
        threshold, achieved, tar = tar_at_far(genuine, impostor, far)
        summary.append([f"TAR at FAR {far:g} (similarity > {threshold:.3f}; FAR there {achieved:.4f})", f"{tar:.3f}"])
    rates = [
        [t, float(np.mean(impostor >= t)), int(np.sum(impostor >= t)), float(np.mean(genuine >= t))] for t in THRESHOLDS
    ]
    section.tables += [
        Table(["measure", "value"], summary, caption="identification on the shared identity set (SFace, max(cos, 0))"),
        Table(
            ["threshold", "false-match rate", "impostor pairs >= threshold", "genuine pairs >= threshold"],
            rates,
            caption="match rates at search thresholds (the API's default: 0.5)",
        ),
    ]
    section.targets.append(Target(goal, f"{rank1:.3f} over {probes} photos", rank1 >= RANK1_TARGET))
    section.notes.append(
        "part B: the photos of bench.data.labelled_photos (group photos such as friends_cast_6_faces, multi-person "
        "files and videos left out; deepface_person_00 counted as angelina_jolie); a near-duplicate of one photo "
        "and the aligned 150x150 / 160x160 chips are kept as they are"
    )


def embed_photos() -> tuple[np.ndarray, np.ndarray, list[str], int]:
    """Unit embeddings of each photo's largest face, their identities, the photos with no face, and how many faces
    were below the identifiable norm."""
    settings = get_settings()
    detector, embedder = get_detector(), get_embedder()
    vectors, identities, missed, unidentifiable = [], [], [], 0
    for path, identity in labelled_photos():
        image = decode_image(path, settings)
        faces = detect_faces(detector, image, settings.detector_max_side)
        if not faces:
            missed.append(path.relative_to(TESTDATA).as_posix())
            continue
        embedding = embedder.embed(image, max(faces, key=lambda face: face.box[2] * face.box[3]))
        vectors.append(embedding.vector)
        identities.append(identity)
        unidentifiable += not embedding.identifiable
    return np.array(vectors, np.float32), np.array(identities), missed, unidentifiable


def rank_one(similarity: np.ndarray, same: np.ndarray) -> tuple[float, int]:
    """Share of probes (photos with another of their identity) whose most similar other photo is of it."""
    others = np.where(np.eye(len(same), dtype=bool), -np.inf, similarity)
    probes = np.flatnonzero(same.sum(axis=1) >= 2)
    nearest = others[probes].argmax(axis=1)
    return float(np.mean(same[probes, nearest])) if len(probes) else float("nan"), len(probes)


def tar_at_far(genuine: np.ndarray, impostor: np.ndarray, far: float) -> tuple[float, float, float]:
    """The lowest impostor score to stay above with at most far * impostors false matches; the FAR and TAR there."""
    allowed = int(far * len(impostor))
    threshold = float(np.sort(impostor)[::-1][min(allowed, len(impostor) - 1)])
    return threshold, float(np.mean(impostor > threshold)), float(np.mean(genuine > threshold))
