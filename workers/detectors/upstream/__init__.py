"""Face detection by an upstream face API: seed 000/001's Akool detect_faces (`akool`) and seed 002's AceData
face/analyze (`acedata`).

Each adapter is a `detect(frame)` call, not a model: every call passes the same guard (`guard`: circuit breaker,
retries, one HTTP request) and its body the same checks (`checks`), so every failure ends as an `UpstreamError`
(`failures`) whose detail says what happened, e.g. "upstream akool returned a malformed response:
faces_obj.0.region[1] has 3 numbers, expected 4". `workers.detectors.routing` picks the adapter and keeps one per
upstream per process.
"""
