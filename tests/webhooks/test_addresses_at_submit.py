"""Webhook addresses are judged when they are given, as media URLs are: the tenant endpoint (PUT
/v1/webhook-endpoint), a task's callback_url (native and crun) and a batch's. A literal private or loopback
address, or a name resolving to one, is refused with the media URL's code and message, in each API's shape;
an allow-listed one (FACEQUEUE_ALLOWED_HOSTS) passes. Real API and Postgres; no worker needed."""

from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from facequeue.core.ssrf import resolve
from tests.test_tenants import new_key
from tests.webhooks.test_endpoint_api import error_of, tenant_client

pytestmark = pytest.mark.integration

MEDIA_URL = "https://e.com/a.jpg"
CRUN_IMAGE = "/api/v1/client/job/detect-face-image"
REFUSED = "Webhooks may not be sent to this URL: address {} is {}"  # the send-time reason, named at submit


def _client(**settings) -> TestClient:
    return tenant_client(new_key(f"ssrf-{uuid.uuid4().hex[:10]}"), **settings)


def _refused(no_allow_list: bool) -> list[tuple[str, str]]:
    """(URL, message): literals refused under the tests' FACEQUEUE_ALLOWED_HOSTS=127.0.0.1/32; with no allow-list,
    `localhost`, named by the first address the resolver gives (as the workers would name it)."""
    if no_allow_list:
        return [("http://localhost:8080/hook", REFUSED.format(resolve("localhost", 80)[0], "loopback"))]
    return [
        ("http://127.0.0.2:8080/hook", REFUSED.format("127.0.0.2", "loopback")),
        ("http://10.1.2.3/hook", REFUSED.format("10.1.2.3", "private")),
        ("http://[::ffff:192.168.0.9]/hook", REFUSED.format("::ffff:c0a8:9", "private (embeds 192.168.0.9)")),
    ]


@pytest.mark.parametrize("no_allow_list", [False, True], ids=["literal", "name"])
def test_an_endpoint_on_a_private_or_loopback_address_is_refused(database, no_allow_list: bool) -> None:
    settings = {"allowed_hosts": []} if no_allow_list else {}
    with _client(**settings) as client:
        for url, message in _refused(no_allow_list):
            response = client.put("/v1/webhook-endpoint", json={"url": url})
            assert error_of(response) == (422, "url_forbidden", message, "url"), url
        assert client.get("/v1/webhook-endpoint").json()["url"] is None


@pytest.mark.parametrize("no_allow_list", [False, True], ids=["literal", "name"])
def test_a_callback_url_on_a_private_or_loopback_address_is_refused_in_each_shape(
    database, no_allow_list: bool
) -> None:
    settings = {"allowed_hosts": []} if no_allow_list else {}
    with _client(**settings) as client:
        for url, message in _refused(no_allow_list):
            native = client.post("/v1/detect", json={"url": MEDIA_URL, "callback_url": url})
            assert error_of(native) == (422, "url_forbidden", message, "callback_url"), url
            crun = client.post(CRUN_IMAGE, json={"image_url": MEDIA_URL, "callback_url": url})
            assert (crun.status_code, crun.json()) == (422, {"code": 422, "message": message, "data": None}), url
            batch = client.post("/v1/batches", json={"items": [{"url": MEDIA_URL}], "callback_url": url})
            assert error_of(batch) == (422, "url_forbidden", message, "callback_url"), url
        assert client.get("/v1/detect").json()["items"] == []


def test_allow_listed_addresses_and_names_pass(database) -> None:
    """127.0.0.1 is allowed in the tests' settings (their receivers listen there); a name is allowed by name."""
    with _client() as client:
        endpoint = client.put("/v1/webhook-endpoint", json={"url": "http://127.0.0.1:9/hook"})
        assert endpoint.status_code == 200 and endpoint.json()["url"] == "http://127.0.0.1:9/hook"
        task = client.post("/v1/detect", json={"url": MEDIA_URL, "callback_url": "http://127.0.0.1:9/task"})
        assert task.status_code == 202
        crun = client.post(CRUN_IMAGE, json={"image_url": MEDIA_URL, "callback_url": "http://127.0.0.1:9/crun"})
        assert crun.status_code == 200 and crun.json()["code"] == 200
    with _client(allowed_hosts="localhost") as client:
        endpoint = client.put("/v1/webhook-endpoint", json={"url": "http://localhost:9/hook"})
        assert endpoint.status_code == 200 and endpoint.json()["url"] == "http://localhost:9/hook"


def test_a_name_that_does_not_resolve_is_left_to_send_time(database) -> None:
    """No DNS answer (yet) is no reason to refuse: the workers judge the name when they send, as they judge every
    address again then. `.invalid` never resolves (RFC 6761)."""
    with _client() as client:
        endpoint = client.put("/v1/webhook-endpoint", json={"url": "https://hooks.invalid/fq"})
        assert endpoint.status_code == 200 and endpoint.json()["url"] == "https://hooks.invalid/fq"
