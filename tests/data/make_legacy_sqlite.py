"""Makes tests/data/legacy_sqlite/facequeue.db: the SQLite file of an embedded data dir, written by the last
release that kept everything in SQLite (commit af16a7c, database revision 0011), for
tests/test_legacy_sqlite_import.py.

It ran once, against a checkout of that release, with that checkout's own virtual environment:

    git -C /work/main worktree add --detach /work/legacy-release af16a7c
    make -C /work/legacy-release install
    /work/legacy-release/.venv/bin/python /work/main/tests/data/make_legacy_sqlite.py \\
        --release /work/legacy-release --out /work/main/tests/data/legacy_sqlite/facequeue.db \\
        --photo /work/shared/testdata/dlib/examples/faces/2008_001009.jpg
    git -C /work/main worktree remove --force /work/legacy-release

In a fresh temporary data dir, with no FACEQUEUE_* variable but FACEQUEUE_DATA_DIR and FACEQUEUE_ALLOWED_HOSTS
(127.0.0.1: the old release refuses loopback webhook URLs otherwise), the release's CLI makes
- tenant "acme" with 1000 credits, a key, and a second key it revokes; its webhook secret rotated and its retention
  set to 30 days;
- tenant "globex" (unlimited credits) with a key limited to 5/second, and a default webhook endpoint;
- the maintenance service flag (turned on, then off);
then `python -m facequeue serve` (SQLite + filesystem broker) gets, over HTTP:
- acme: the photo (an Idempotency-Key and a callback_url answering 200): succeeded, 2 faces; a body that is not an
  image: failed;
- globex: the photo with a callback_url answering 410 Gone (the endpoint is disabled); a batch of 2 items (the
  photo twice, named) with a callback_url answering 200.
Once every task is final and every webhook answered, serve gets SIGTERM; the copy of facequeue.db is VACUUMed
(journal mode left as the release set it: WAL). It prints the plain API keys, which the test uses.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TIMEOUT = 300.0  # seconds for the service to start, and for each task or delivery to end (a loaded machine)
NOT_AN_IMAGE = b"this is plain text, not an image"


class Receiver(BaseHTTPRequestHandler):
    """A webhook endpoint: /gone answers 410 Gone, every other path 200."""

    received: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.received.append(self.path)
        self.send_response(410 if self.path == "/gone" else 200)
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(what: str, check: Any) -> Any:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise SystemExit(f"gave up waiting for {what}")


class Legacy:
    """The old release's CLI and HTTP API, in one data dir."""

    def __init__(self, release: Path, data_dir: Path) -> None:
        self.release = release
        self.python = str(release / ".venv" / "bin" / "python")
        self.env = {name: value for name, value in os.environ.items() if not name.startswith("FACEQUEUE_")}
        self.env.update(FACEQUEUE_DATA_DIR=str(data_dir), FACEQUEUE_ALLOWED_HOSTS="127.0.0.1")
        self.base = ""

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [self.python, "-m", "facequeue", *args],
            cwd=self.release,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise SystemExit(f"facequeue {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def create_key(self, *args: str) -> str:
        return self.cli("keys", "create", *args).strip().splitlines()[-1]

    def request(self, method: str, path: str, key: str, body: Any = None, headers: dict | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {key}")
        request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def final_task(self, task_id: str, key: str) -> dict:
        def final() -> dict | None:
            task = self.request("GET", f"/v1/detect/{task_id}", key)
            return task if task["status"] in ("succeeded", "failed", "canceled") else None

        return wait_for(f"task {task_id}", final)

    def deliveries(self, key: str, task_or_batch_id: str) -> list[dict]:
        return self.request("GET", f"/v1/deliveries?detect_task_id={task_or_batch_id}", key)["items"]


def healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/healthz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def make(release: Path, out: Path, photo: Path) -> None:
    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    hooks = f"http://127.0.0.1:{receiver.server_address[1]}"
    image = base64.b64encode(photo.read_bytes()).decode()

    with tempfile.TemporaryDirectory(prefix="facequeue-legacy-") as data_dir:
        legacy = Legacy(release, Path(data_dir))
        legacy.cli("migrate")
        acme = legacy.create_key("--tenant", "acme", "--credits", "1000")
        revoked = legacy.create_key("--tenant", "acme")
        legacy.cli("keys", "revoke", revoked[:10])
        globex = legacy.create_key("--tenant", "globex", "--rate", "5/second")
        legacy.cli("tenants", "rotate-secret", "acme")
        legacy.cli("tenants", "set-retention", "acme", "30d")
        legacy.cli("tenants", "set-webhook", "globex", f"{hooks}/tenant-endpoint")
        legacy.cli("maintenance", "on")
        legacy.cli("maintenance", "off")

        port = free_port()
        legacy.base = f"http://127.0.0.1:{port}"
        serve = subprocess.Popen(
            [legacy.python, "-m", "facequeue", "serve", "--port", str(port)], cwd=release, env=legacy.env
        )
        try:
            wait_for("serve", lambda: healthy(legacy.base))
            faces = legacy.request(
                "POST",
                "/v1/detect",
                acme,
                {"img": image, "callback_url": f"{hooks}/hook"},
                headers={"Idempotency-Key": "legacy-photo-1"},
            )["detect_task_id"]
            broken = legacy.request("POST", "/v1/detect", acme, {"img": base64.b64encode(NOT_AN_IMAGE).decode()})
            gone = legacy.request("POST", "/v1/detect", globex, {"img": image, "callback_url": f"{hooks}/gone"})
            items = [{"img": image, "name": "first.jpg"}, {"img": image, "name": "second.jpg"}]
            batch = legacy.request("POST", "/v1/batches", globex, {"items": items, "callback_url": f"{hooks}/hook"})

            for task_id, key, expected in (
                (faces, acme, "succeeded"),
                (broken["detect_task_id"], acme, "failed"),
                (gone["detect_task_id"], globex, "succeeded"),
            ):
                task = legacy.final_task(task_id, key)
                assert task["status"] == expected, task
            wait_for(
                "the batch", lambda: legacy.request("GET", f"/v1/batches/{batch['batch_id']}", globex)["finished_at"]
            )
            for key, owner in ((acme, faces), (globex, gone["detect_task_id"]), (globex, batch["batch_id"])):
                wait_for(f"the webhook of {owner}", lambda key=key, owner=owner: legacy.deliveries(key, owner))
        finally:
            serve.send_signal(signal.SIGTERM)
            serve.wait(timeout=120)

        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(data_dir) / "facequeue.db", out)
    receiver.shutdown()
    with sqlite3.connect(out) as copy:
        copy.execute("VACUUM")
        counts = {
            table: copy.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
            for (table,) in copy.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        }
    copy.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{out}{suffix}").unlink(missing_ok=True)
    size = out.stat().st_size
    assert size < 1024 * 1024, f"{out} is {size} bytes"
    print(json.dumps({"bytes": size, "rows": counts, "webhooks_received": Receiver.received}, indent=2))
    print(json.dumps({"acme": acme, "acme_revoked": revoked, "globex": globex}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True, help="a checkout of af16a7c, after `make install`")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--photo", type=Path, required=True, help="a photo with faces")
    args = parser.parse_args()
    make(args.release.resolve(), args.out.resolve(), args.photo.resolve())


if __name__ == "__main__":
    main()
