"""The web console in a real browser: Debian's chromium driven by Playwright, against `facequeue serve` (the
embedded API and its worker, tests/test_embedded.py's fixture), signed in with a key made by `facequeue keys
create` as the console's sign-in page tells a user to."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import httpx
import pytest
from playwright.sync_api import Browser, Page, Request, expect, sync_playwright

from facequeue.cli.demo import Placement, astronaut_bgr, compose
from tests.conftest import IN_CI
from tests.identity.support import Head, scene
from tests.support import create_api_key, wait_for_final
from tests.test_batches import wait_batch
from tests.test_embedded import embedded_server  # noqa: F401  (started once for this module)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
KEY_STORAGE = "facequeue.apiKey"
DETECT_TIMEOUT_MS = 90_000
PHONE = {"width": 390, "height": 844}
CHROMIUM_MISSING = f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)"
# Outside CI a missing chromium skips the browser tests before their server starts; in CI it fails them.
needs_chromium = pytest.mark.skipif(not CHROMIUM.is_file() and not IN_CI, reason=CHROMIUM_MISSING)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(CHROMIUM_MISSING)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server_and_key(embedded_server) -> tuple[str, str]:  # noqa: F811
    """The embedded server's URL and a key for a tenant of this module's own."""
    server, data_dir, _, _ = embedded_server
    return server, create_api_key(data_dir, "console")


@pytest.fixture
def requests_made() -> list[Request]:
    """Every request the page made, to prove nothing leaves this machine."""
    return []


@pytest.fixture
def page(browser: Browser, requests_made: list[Request]) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("request", lambda request: requests_made.append(request))
    yield page
    context.close()


def sign_in(page: Page, server: str, key: str) -> None:
    page.goto(f"{server}/console")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()


def drop_file(page: Page, selector: str, name: str, mime: str, data: bytes) -> None:
    """Drag-and-drop as a person does it: a drop event whose DataTransfer holds the file."""
    transfer = page.evaluate_handle(
        """([name, mime, b64]) => {
            const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, { type: mime }));
            return transfer;
        }""",
        [name, mime, base64.b64encode(data).decode()],
    )
    page.dispatch_event(selector, "drop", {"dataTransfer": transfer})


def left_the_machine(requests: list[Request]) -> list[str]:
    """URLs the page sent anywhere but this machine. blob: and data: URLs never leave the page; Chromium also
    reports a request that the page's Content-Security-Policy refused (failure "csp"), which never went out."""
    sent = [request for request in requests if not request.url.startswith(("blob:", "data:"))]
    assert sent
    return [
        request.url for request in sent if urlsplit(request.url).hostname != "127.0.0.1" and request.failure != "csp"
    ]


@needs_chromium
def test_drop_a_photo_and_see_its_one_face(
    server_and_key: tuple[str, str],
    page: Page,
    requests_made: list[Request],
    tmp_path: Path,
) -> None:
    server, key = server_and_key
    sign_in(page, server, key)
    # the key lives in this tab's sessionStorage only: no cookie, not in the URL
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") == key
    assert page.evaluate("document.cookie") == ""
    assert page.context.cookies() == []

    photo = cv2.imencode(".jpg", astronaut_bgr())[1].tobytes()
    drop_file(page, "[data-slot=drop]", "astronaut.jpg", "image/jpeg", photo)
    page.wait_for_url(re.compile(r"/console#/tasks/[^/]+$"))
    task_id = page.url.rsplit("/", 1)[1]
    expect(page.locator("[data-slot=status]")).to_have_text("succeeded", timeout=DETECT_TIMEOUT_MS)
    expect(page.locator("[data-slot=faces]")).to_have_text("1")
    expect(page.locator("[data-slot=frames]")).to_have_text("1")
    expect(page.locator("[data-slot=frame-rows] tr")).to_have_count(1)
    expect(page.locator("[data-slot=frame-rows] tr td").nth(2)).to_have_text("1")
    expect(page.locator("[data-slot=preview-note]")).to_contain_text("Frame 0: 1 face")
    expect(page.locator("[data-slot=json]")).to_contain_text(f'"detect_task_id": "{task_id}"')
    # to look at: pytest keeps the last runs' tmp_path (pytest-of-$USER/pytest-current/ in the temp dir)
    page.screenshot(path=tmp_path / "console-task.png", full_page=True, animations="disabled")

    page.get_by_role("link", name="Tasks", exact=True).click()
    row = page.locator("[data-slot=rows] tr", has=page.get_by_role("link", name=task_id))
    expect(row.locator(".badge")).to_have_text("succeeded")
    # other tests of this module share the tenant, and one of them leaves a failed task: none cancels one
    page.get_by_label("Status").select_option("failed")
    expect(row).to_have_count(0)
    assert set(page.locator("[data-slot=rows] tr .badge").all_inner_texts()) <= {"failed"}
    page.get_by_label("Status").select_option("canceled")
    expect(page.locator("[data-slot=empty]")).to_be_visible()
    expect(page.locator("[data-slot=rows] tr")).to_have_count(0)

    api_calls = [request for request in requests_made if "/v1/" in request.url]
    assert {request.headers.get("authorization") for request in api_calls} == {f"Bearer {key}"}
    assert key not in " ".join(request.url for request in requests_made)
    assert left_the_machine(requests_made) == []


@needs_chromium
def test_task_list_names_each_task_and_counts_its_faces_and_fits_a_phone(
    server_and_key: tuple[str, str], page: Page, media_server, tmp_path: Path
) -> None:
    server, key = server_and_key
    pictures = {  # name: (picture, faces in it)
        "pair.jpg": (compose(640, 360, [Placement(x=60, y=80, height=180), Placement(x=380, y=80, height=180)]), 2),
        "astronaut.jpg": (astronaut_bgr(), 1),
        "empty.jpg": (compose(640, 360, []), 0),
    }
    task_ids = {}
    with httpx.Client(base_url=server, headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
        for name, (picture, _) in pictures.items():
            media_server.expect_request(f"/photos/{name}").respond_with_data(
                cv2.imencode(".jpg", picture)[1].tobytes(), content_type="image/jpeg"
            )
            submitted = client.post("/v1/detect", json={"url": media_server.url_for(f"/photos/{name}")})
            task_ids[name] = submitted.json()["detect_task_id"]
        for task_id in task_ids.values():
            assert wait_for_final(client, task_id, timeout=DETECT_TIMEOUT_MS / 1000)["status"] == "succeeded"

    sign_in(page, server, key)
    for name, (_, faces) in pictures.items():
        cells = page.locator("[data-slot=rows] tr", has=page.get_by_role("link", name=task_ids[name])).locator("td")
        expect(cells.nth(1)).to_have_text(name)
        expect(cells.nth(2)).to_have_text(str(faces))
    page.screenshot(path=tmp_path / "console-list.png", full_page=True, animations="disabled")

    page.set_viewport_size(PHONE)
    page.screenshot(path=tmp_path / "console-list-phone.png", full_page=True, animations="disabled")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # the list scrolls in its card
    page.get_by_role("link", name=task_ids["pair.jpg"]).click()
    delete = page.get_by_role("button", name="Delete task")
    expect(delete).to_be_visible()
    button, card = delete.bounding_box(), page.locator(".card", has=delete).bounding_box()
    assert card["x"] <= button["x"] and button["x"] + button["width"] <= card["x"] + card["width"]
    assert card["y"] <= button["y"] and button["y"] + button["height"] <= card["y"] + card["height"]
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=tmp_path / "console-task-phone.png", full_page=True, animations="disabled")


@needs_chromium
def test_a_refused_key_stays_signed_out(server_and_key: tuple[str, str], page: Page) -> None:
    server, _ = server_and_key
    page.goto(f"{server}/console")
    page.get_by_label("API key").fill("fq_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#notice")).to_have_text("The API refused this key: sign in again.")
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{KEY_STORAGE}')") is None


@needs_chromium
def test_batch_page_shows_counts_and_failures(server_and_key: tuple[str, str], page: Page) -> None:
    server, key = server_and_key
    photo = base64.b64encode(cv2.imencode(".jpg", cv2.resize(astronaut_bgr(), (256, 256)))[1]).decode()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        accepted = client.post("/v1/batches", json={"items": [{"img": photo}, {"img": "bm90IGFuIGltYWdl"}]})
        assert accepted.status_code == 202, accepted.text
        batch = wait_batch(client, accepted.json()["batch_id"])
    assert (batch["status"], batch["counts"]["succeeded"], len(batch["failures"])) == ("completed", 1, 1)
    batch_id, (failed,) = batch["batch_id"], batch["failures"]

    sign_in(page, server, key)
    page.get_by_role("link", name="Batches").click()
    page.get_by_placeholder("Batch id").fill(batch_id)
    page.get_by_role("button", name="Show").click()
    expect(page.locator("[data-slot=status]")).to_have_text("completed")
    expect(page.locator("[data-slot=total]")).to_have_text("2")
    expect(page.locator("[data-slot=progress]")).to_have_text("100%")
    counts = page.locator("[data-slot=count-rows] tr")
    expect(counts.filter(has_text="succeeded").locator("td").nth(1)).to_have_text("1")
    expect(counts.filter(has_text="failed").locator("td").nth(1)).to_have_text("1")
    failure = page.locator("[data-slot=failure-rows] tr")
    expect(failure).to_have_count(1)
    expect(failure.get_by_role("link")).to_have_text(failed["detect_task_id"])
    expect(failure).to_contain_text(f"{failed['error']['code']}: {failed['error']['message']}")


@needs_chromium
def test_webhooks_page_shows_the_endpoint_or_says_it_is_missing(server_and_key: tuple[str, str], page: Page) -> None:
    server, key = server_and_key
    endpoint = httpx.get(f"{server}/v1/webhook-endpoint", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    sign_in(page, server, key)
    page.get_by_role("link", name="Webhooks").click()
    if endpoint.status_code == 404:
        expect(page.get_by_text("This server does not offer the webhook endpoint API.")).to_be_visible()
    else:
        assert endpoint.status_code == 200, endpoint.text
        expect(page.locator("[data-slot=url]")).to_have_text(endpoint.json()["url"] or "not set")
    expect(page.locator("#notice")).to_be_hidden()


@needs_chromium
def test_a_collection_indexes_a_face_and_finds_it_again(
    server_and_key: tuple[str, str], page: Page, requests_made: list[Request], tmp_path: Path
) -> None:
    server, key = server_and_key
    indexed_photo, searched_photo = tmp_path / "astronaut.png", tmp_path / "mirrored.png"
    cv2.imwrite(str(indexed_photo), astronaut_bgr())
    cv2.imwrite(str(searched_photo), scene([Head("astronaut", 300, 60, 180, mirrored=True)]))
    page.on("dialog", lambda dialog: dialog.accept())  # "Delete collection crew, ...?"

    sign_in(page, server, key)
    page.get_by_role("link", name="Collections").click()
    expect(page.get_by_text("No collections yet.")).to_be_visible()
    page.get_by_label("Collection id").fill("crew")
    page.get_by_label("Description").fill("<b>the ISS crew</b>")  # shown as typed, never as markup
    page.get_by_role("button", name="Create").click()
    row = page.get_by_role("row", name=re.compile("^crew"))
    expect(row.get_by_role("cell")).to_have_text(["crew", "<b>the ISS crew</b>", "0", re.compile(r"^\d{4}-"), "Delete"])
    page.get_by_label("Collection id").fill("crew")
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("collection crew already exists")).to_be_visible()

    row.get_by_role("link", name="crew").click()
    expect(page.get_by_role("heading", name="Collection crew")).to_be_visible()
    expect(page.get_by_text("No faces in this collection yet.")).to_be_visible()
    adding = page.get_by_role("region", name="Add a face")
    drop_file(page, "[data-slot=index-drop]", "astronaut.png", "image/png", indexed_photo.read_bytes())
    adding.get_by_label("External id").fill("astronaut")
    adding.get_by_role("button", name="Add face").click()
    expect(adding.get_by_text("Indexed 1 face", exact=True)).to_be_visible(timeout=DETECT_TIMEOUT_MS)
    expect(adding.get_by_text("Indexed face 1")).to_be_visible()

    faces = page.get_by_role("region", name="Faces").get_by_role("listitem")
    expect(faces).to_have_count(1)
    expect(faces).to_contain_text("astronaut")
    expect(page.locator("dd[data-slot=face-count]")).to_have_text("1")
    assert_loaded(faces.get_by_role("img", name="Face crop of astronaut"))

    page.get_by_role("region", name="Search").locator("input[type=file]").set_input_files(searched_photo)
    matches = page.get_by_role("region", name="Matches")
    expect(matches.get_by_text("1 face found")).to_be_visible(timeout=DETECT_TIMEOUT_MS)
    expect(matches.get_by_role("heading", name="Face 1: 1 match")).to_be_visible()
    match = matches.get_by_role("row", name=re.compile("astronaut"))
    expect(match.get_by_role("cell").nth(1)).to_have_text("astronaut")
    assert float(match.get_by_role("cell").nth(2).inner_text()) >= 0.5
    assert_loaded(match.get_by_role("img", name="Face crop of astronaut"))
    assert_loaded(matches.get_by_role("img", name="The searched photo, its faces numbered"))
    page.screenshot(path=tmp_path / "console-collection.png", full_page=True, animations="disabled")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.screenshot(path=tmp_path / "console-collection-phone.png", full_page=True, animations="disabled")

    page.get_by_role("button", name="Delete collection").click()
    expect(page.get_by_text("No collections yet.")).to_be_visible()
    expect(page.get_by_role("link", name="crew")).to_have_count(0)
    assert left_the_machine(requests_made) == []


def assert_loaded(image) -> None:
    """The picture is visible and its bytes decoded (a broken or blocked image has no natural width)."""
    expect(image).to_be_visible()
    expect(image).to_have_js_property("complete", True)
    assert image.evaluate("img => img.naturalWidth") > 0


@needs_chromium
def test_docs_and_redoc_load_only_from_this_server(
    server_and_key: tuple[str, str],
    page: Page,
    requests_made: list[Request],
) -> None:
    server, _ = server_and_key
    page.goto(f"{server}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("facequeue")
    expect(page.locator(".opblock-summary-path", has_text="/v1/detect").first).to_be_visible()
    page.goto(f"{server}/redoc")
    expect(page.get_by_role("heading", name=re.compile("^facequeue"))).to_be_visible()
    page.wait_for_load_state("networkidle")
    loaded = [request.url for request in requests_made]
    assert f"{server}/docs/static/swagger-ui-bundle.js" in loaded
    assert f"{server}/docs/static/redoc.standalone.js" in loaded
    # the policy that keeps ReDoc's CDN-hosted logo from loading
    assert "img-src 'self' data:;" in httpx.get(f"{server}/redoc", timeout=10).headers["content-security-policy"]
    assert left_the_machine(requests_made) == []


def test_console_shell_allows_scripts_from_this_server_only(server_and_key: tuple[str, str]) -> None:
    server, _ = server_and_key
    shell = httpx.get(f"{server}/console", timeout=10)
    assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in shell.headers["content-security-policy"]
    assert not re.search(r"(src|href)=\"(https?:)?//", shell.text)  # nothing from a CDN
    for asset, kind in (("console.js", "javascript"), ("console.css", "text/css")):
        response = httpx.get(f"{server}/console/static/{asset}", timeout=10)
        assert response.status_code == 200 and kind in response.headers["content-type"]


@needs_chromium
def test_batch_page_lists_the_persons_across_the_batch(server_and_key: tuple[str, str], page: Page) -> None:
    server, key = server_and_key
    her = base64.b64encode(cv2.imencode(".jpg", cv2.resize(astronaut_bgr(), (256, 256)))[1]).decode()
    her_again = base64.b64encode(cv2.imencode(".jpg", astronaut_bgr())[1]).decode()
    headers = {"Authorization": f"Bearer {key}"}
    items = [{"img": her, "name": "her.jpg"}, {"img": her_again, "name": "her-again.jpg"}]
    with httpx.Client(base_url=server, headers=headers, timeout=10) as client:
        accepted = client.post("/v1/batches", json={"items": items, "persons": True})
        assert accepted.status_code == 202, accepted.text
        batch = wait_batch(client, accepted.json()["batch_id"])
        [person] = [json.loads(line) for line in client.get(f"/v1/batches/{batch['batch_id']}/persons").text.split()]

    sign_in(page, server, key)
    page.get_by_role("link", name="Batches").click()
    page.get_by_placeholder("Batch id").fill(batch["batch_id"])
    page.get_by_role("button", name="Show").click()
    expect(page.locator("[data-slot=persons-summary]")).to_have_text("1 person, 1 in several items.")
    row = page.locator("[data-slot=person-rows] tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(0)).to_have_text(person["batch_person_id"])
    expect(row.locator("td").nth(1)).to_have_text("her.jpg (0), her-again.jpg (0)")
    expect(row.get_by_role("link", name="her-again.jpg")).to_have_attribute(
        "href", f"#/tasks/{person['items'][1]['detect_task_id']}"
    )
