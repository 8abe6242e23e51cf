"""Example responses of the seed APIs (../shared/seeds), as data: the shapes facequeue must answer in."""

AKOOL_DETECT_FACES = {
    "error_code": 0,
    "error_msg": "SUCCESS",
    "faces_obj": {
        "0": {
            "landmarks": [[[120, 85], [180, 88], [150, 130], [150, 165], [125, 165], [175, 168]]],
            "landmarks_str": ["120,85:180,88:150,130:150,165"],
            "region": [[80, 50, 150, 180]],
            "removed": [],
            "frame_time": None,
            "face_urls": None,
            "crop_region": None,
            "crop_landmarks": None,
        }
    },
}

AKOOL_DETECT_FACES_WITH_CROPS = {
    **AKOOL_DETECT_FACES,
    "faces_obj": {
        "0": {
            **AKOOL_DETECT_FACES["faces_obj"]["0"],
            "face_urls": ["https://s3.example.com/faces/face_detect_0.jpg"],
            "crop_region": [[30, 0, 250, 280]],
            "crop_landmarks": ["90,85:150,88:120,130:120,165"],
        }
    },
}

SEED_FRAME_KEYS = list(AKOOL_DETECT_FACES["faces_obj"]["0"])

AKOOL_ANALYZE_FRAMES = {
    "success": True,
    "frame_count": 3,
    "persons": [
        {
            "person_id": "person_0",
            "index": 0,
            "face_url": "https://s3.example.com/faces/face_abc123.jpg",
            "bbox": [100, 50, 200, 180],
            "confidence": 0.95,
            "appearances": [
                {"timestamp": 0.0, "frame_idx": 0, "bbox": [100, 50, 200, 180]},
                {"timestamp": 1.0, "frame_idx": 1, "bbox": [105, 52, 205, 182]},
            ],
            "first_seen": 0.0,
            "last_seen": 1.0,
        }
    ],
}

AKOOL_ANALYZE_FRAMES_ERROR = {"success": False, "error": "frame_urls is required and must not be empty"}

ACEDATA_ERROR = {
    "success": False,
    "error": {"code": "api_error", "message": "fetch failed"},
    "trace_id": "2cf86e86-22a4-46e1-ac2f-032c0f2a4e89",
}

ACEDATA_GROUP_SIZES = {
    "face_profile": 21,
    "left_eye": 8,
    "right_eye": 8,
    "left_eye_brow": 8,
    "right_eye_brow": 8,
    "mouth": 22,
    "nose": 13,
    "left_pupil": 1,
    "right_pupil": 1,
}

CRUN_CREATE = {"code": 200, "message": "success", "data": {"detect_task_id": "dit60yt8reqplt1c16"}}

CRUN_RESULT = {
    "code": 200,
    "message": "success",
    "data": {
        "detect_task_id": "dit60yt8reqplt1c16",
        "status": "succeeded",
        "error": None,
        "result": {
            "id": "m1oZzqYp9dN",
            "status": "succeed",
            "type": "face_detect",
            "hair_id": None,
            "faces": [{"id": 0, "link": "https://example.com/detected-face-0.jpg"}],
            "started_at": "2026-05-27 12:14:03",
            "finished_at": "2026-05-27 12:14:04",
            "error": None,
        },
    },
}


def assert_same_shape(example, actual, path: str = "$") -> None:
    """Same keys at every level, same JSON types; a None in the example allows None only."""
    if isinstance(example, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        assert list(actual) == list(example), f"{path}: keys {list(actual)} != {list(example)}"
        for key, value in example.items():
            assert_same_shape(value, actual[key], f"{path}.{key}")
    elif isinstance(example, list):
        assert isinstance(actual, list), f"{path}: expected an array, got {actual!r}"
        if example:
            for position, item in enumerate(actual):
                assert_same_shape(example[0], item, f"{path}[{position}]")
    elif example is None:
        assert actual is None, f"{path}: expected null, got {actual!r}"
    elif isinstance(example, bool):
        assert isinstance(actual, bool), f"{path}: expected a boolean, got {actual!r}"
    elif isinstance(example, int):
        assert isinstance(actual, int) and not isinstance(actual, bool), f"{path}: expected an integer, got {actual!r}"
    elif isinstance(example, float):
        assert isinstance(actual, int | float) and not isinstance(actual, bool), f"{path}: expected a number"
    else:
        assert isinstance(actual, type(example)), f"{path}: expected {type(example).__name__}, got {actual!r}"
