"""The circuit breaker against a flapping upstream, and routing tasks to local YuNet or the upstream."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pybreaker
import pytest

from tests.upstream.fake_upstreams import (
    ACEDATA_PATH,
    AKOOL_PATH,
    AceDataAnalyze,
    FakeUpstream,
    fixed,
    seed_example_shapes,
    status,
)
from tests.upstream.support import iou, local_faces
from workers.detectors.routing import detector_for
from workers.detectors.upstream.akool import AkoolUpstream
from workers.detectors.upstream.failures import Failure, UpstreamError
from workers.detectors.yunet import YuNetDetector

RESET = 0.3  # seconds an open circuit waits before its trial call


@pytest.fixture
def flaky_settings(make_settings):
    """Two failed calls open the circuit; one attempt per call keeps the counting plain."""
    return make_settings(upstream_breaker_failures=2, upstream_max_attempts=1, upstream_breaker_reset=RESET)


@pytest.fixture
def akool(flaky_settings) -> Iterator[AkoolUpstream]:
    adapter = AkoolUpstream(flaky_settings)
    yield adapter
    adapter.close()


def failure_of(call) -> Failure:
    with pytest.raises(UpstreamError) as raised:
        call()
    return raised.value.failure


def test_circuit_opens_after_consecutive_failures_and_stops_calling(akool, fake, astronaut):
    fake.fail_next(*[status(500)] * 10)
    detect = lambda: akool.detect(astronaut, max_side=1280)  # noqa: E731

    assert [failure_of(detect) for _ in range(2)] == [Failure.SERVER_ERROR] * 2
    assert akool.breaker.current_state == pybreaker.STATE_OPEN

    with pytest.raises(UpstreamError) as raised:
        detect()
    assert raised.value.failure is Failure.CIRCUIT_OPEN
    assert raised.value.detail == (
        "upstream akool is unavailable: its circuit opened after 2 consecutive failed calls "
        "and lets one trial call through 0.3 s after opening"
    )
    assert len(fake.requests) == 2  # the open circuit sent nothing


def test_half_open_trial_success_closes_the_circuit(akool, fake, astronaut):
    fake.fail_next(status(500), status(500))
    for _ in range(2):
        failure_of(lambda: akool.detect(astronaut, max_side=1280))

    time.sleep(RESET + 0.05)  # the circuit's reset timeout passes: it lets a trial call through
    assert len(akool.detect(astronaut, max_side=1280)) == 1  # the trial call, served

    assert akool.breaker.current_state == pybreaker.STATE_CLOSED
    fake.fail_next(status(500))
    assert failure_of(lambda: akool.detect(astronaut, max_side=1280)) is Failure.SERVER_ERROR
    assert akool.breaker.current_state == pybreaker.STATE_CLOSED  # one failure after closing is not two
    assert len(fake.requests) == 4


def test_half_open_trial_failure_opens_the_circuit_again(akool, fake, astronaut):
    fake.fail_next(*[status(503)] * 10)
    detect = lambda: akool.detect(astronaut, max_side=1280)  # noqa: E731
    for _ in range(2):
        failure_of(detect)

    time.sleep(RESET + 0.05)  # the circuit's reset timeout passes: it lets a trial call through
    assert failure_of(detect) is Failure.SERVER_ERROR  # the trial call reached the server and failed
    assert failure_of(detect) is Failure.CIRCUIT_OPEN  # at once open again
    assert len(fake.requests) == 3


def test_a_call_counts_once_whatever_its_retries(make_settings, fake, astronaut):
    akool = AkoolUpstream(make_settings(upstream_breaker_failures=2, upstream_max_attempts=3), sleep=lambda _: None)
    fake.fail_next(*[status(502)] * 10)

    assert failure_of(lambda: akool.detect(astronaut, max_side=1280)) is Failure.SERVER_ERROR
    assert akool.breaker.current_state == pybreaker.STATE_CLOSED
    assert len(fake.requests) == 3
    akool.close()


def test_rejections_prove_the_upstream_alive(akool, upstream, astronaut):
    upstream.serve(AKOOL_PATH, fixed({"error_code": 1, "error_msg": "Failed to download media from URL"}))

    failures = [failure_of(lambda: akool.detect(astronaut, max_side=1280)) for _ in range(4)]

    assert failures == [Failure.REJECTED] * 4
    assert akool.breaker.current_state == pybreaker.STATE_CLOSED


def test_local_mode_never_calls_the_upstream(make_settings, fake, astronaut):
    routed = detector_for("local", make_settings())

    faces = routed.detect(astronaut, max_side=1280)

    assert [face.box for face in faces] == [face.box for face in local_faces(astronaut)]
    assert (routed.served_by, routed.model_version) == ("yunet", YuNetDetector.model_version)
    assert fake.requests == []


def test_upstream_mode_serves_from_the_upstream(make_settings, fake, astronaut):
    routed = detector_for("upstream", make_settings())

    [face] = routed.detect(astronaut, max_side=1280)

    assert iou(face.box, local_faces(astronaut)[0].box) > 0.9
    assert (routed.served_by, routed.model_version) == ("upstream:akool", "akool detect_faces")
    assert routed.upstream_frames == 1


def test_upstream_mode_fails_the_task_on_failure_and_on_an_open_circuit(flaky_settings, fake, astronaut):
    fake.fail_next(*[status(500)] * 10)
    routed = detector_for("upstream", flaky_settings)
    detect = lambda: routed.detect(astronaut, max_side=1280)  # noqa: E731

    assert [failure_of(detect) for _ in range(3)] == [Failure.SERVER_ERROR] * 2 + [Failure.CIRCUIT_OPEN]
    # the next task of this process meets the same open circuit
    assert failure_of(lambda: detector_for("upstream", flaky_settings).detect(astronaut, 1280)) is Failure.CIRCUIT_OPEN
    assert len(fake.requests) == 2


def test_auto_falls_back_to_local_while_the_upstream_flaps(flaky_settings, fake, astronaut):
    routed = detector_for("auto", flaky_settings)
    [expected] = local_faces(astronaut)

    fake.fail_next(status(500), status(500))  # the upstream goes down
    down = [routed.detect(astronaut, max_side=1280) for _ in range(3)]
    assert [[face.box for face in faces] for faces in down] == [[expected.box]] * 3  # local YuNet's faces
    assert len(fake.requests) == 2  # the third frame found the circuit open and did not call

    time.sleep(RESET + 0.05)  # the upstream is back; the circuit lets a trial call through
    [back] = routed.detect(astronaut, max_side=1280)
    assert iou(back.box, expected.box) > 0.9
    routed.detect(astronaut, max_side=1280)
    assert len(fake.requests) == 4

    assert routed.served == {
        "yunet (upstream failed)": 2,
        "yunet (upstream unavailable)": 1,
        "upstream:akool": 2,
    }
    assert routed.served_by == "yunet (upstream failed) + yunet (upstream unavailable) + upstream:akool"
    assert routed.model_version == f"{YuNetDetector.model_version} + akool detect_faces"
    assert routed.upstream_frames == 2


def test_not_configured_upstream(make_settings, fake, astronaut):
    settings = make_settings(upstream_url=None)

    with pytest.raises(UpstreamError) as raised:
        detector_for("upstream", settings)
    assert raised.value.failure is Failure.NOT_CONFIGURED
    assert raised.value.detail == "upstream akool is not configured (FACEQUEUE_UPSTREAM_URL is unset)"

    routed = detector_for("auto", settings)
    routed.detect(astronaut, max_side=1280)
    assert routed.served_by == "yunet"


def test_disabled_upstream(make_settings, fake, astronaut):
    settings = make_settings(disabled_features=["upstream"])

    with pytest.raises(UpstreamError) as raised:
        detector_for("upstream", settings)
    assert raised.value.failure is Failure.DISABLED

    routed = detector_for("auto", settings)
    assert routed.served_by == "yunet (upstream disabled)"  # before any frame: who will serve
    routed.detect(astronaut, max_side=1280)
    assert routed.served_by == "yunet (upstream disabled)"
    assert fake.requests == []


def test_auto_with_acedata_serves_frames_without_url_locally(make_settings, upstream, astronaut):
    fake = FakeUpstream(AceDataAnalyze(seed_example_shapes))
    upstream.serve(ACEDATA_PATH, fake)
    routed = detector_for("auto", make_settings(upstream_protocol="acedata"))

    routed.detect(astronaut, max_side=1280, source_url=None)

    assert routed.served_by == "yunet (upstream cannot serve this frame)"
    assert fake.requests == []


def test_unknown_mode_is_refused(make_settings):
    with pytest.raises(ValueError, match="detector mode must be one of local, upstream, auto"):
        detector_for("cloud", make_settings())
