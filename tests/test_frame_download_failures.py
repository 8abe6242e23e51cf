"""analyze_frames whose frames all fail to download is a download failure every time: 400 "Failed to download
image from URL" (seed 003). Fuzzing found the fetch stage removing its folder while other downloads still
made theirs, which turned some of these into an internal_error, answered 500 "Failed to process frames"."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration

ANALYZE_FRAMES = "/interface/detect-api/faceswap/analyze_frames"
UNRESOLVABLE = [f"http://frame-{n}.invalid/frame.jpg" for n in range(6)]  # .invalid never resolves (RFC 2606)


def test_frames_that_all_fail_to_download_are_always_a_download_failure(api_client, worker) -> None:
    answers = [api_client.post(ANALYZE_FRAMES, json={"frame_urls": UNRESOLVABLE}) for _ in range(20)]
    assert {(answer.status_code, answer.text) for answer in answers} == {
        (400, '{"success":false,"error":"Failed to download image from URL"}')
    }
