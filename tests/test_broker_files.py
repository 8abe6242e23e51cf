"""The embedded broker's message files: written whole, under a name readers skip until it is renamed."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from kombu import Connection

from facequeue.lifecycle import broker_files


def _connection(folder: Path) -> Connection:
    (folder / "control").mkdir(exist_ok=True)  # as facequeue/lifecycle/broker.py makes it for the embedded broker
    options = {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),  # kombu's default is ./control
        "polling_interval": 0.001,
    }
    return Connection(f"{broker_files.SCHEME}://", transport_options=options)


def test_a_half_written_message_is_not_taken(tmp_path: Path) -> None:
    (tmp_path / "1_abc.default.msg.part").write_bytes(b'{"body": ')  # a writer still at work
    with _connection(tmp_path) as connection:
        queue = connection.SimpleQueue("default")
        assert queue.qsize() == 0
        queue.put({"n": 1})
        message = queue.get(timeout=5)
        assert message.payload == {"n": 1}
        message.ack()


def test_a_reader_racing_the_writer_only_ever_sees_whole_messages(tmp_path: Path) -> None:
    """kombu's reader takes any `*.<queue>.msg` it lists; here one lists and decodes them while 300 are written.
    (Stock kombu creates the file first and writes it after: this reader then finds empty files.)"""
    sent = 300  # queue "race": kombu keeps declared bindings per process, so each test uses its own queue
    done = threading.Event()
    torn: list[str] = []

    def read_while_written() -> None:
        while not done.is_set():
            for path in tmp_path.glob("*.race.msg"):
                try:
                    json.loads(path.read_bytes())
                except ValueError:
                    torn.append(path.name)

    reader = threading.Thread(target=read_while_written)
    reader.start()
    try:
        with _connection(tmp_path) as connection:
            queue = connection.SimpleQueue("race")
            for n in range(sent):
                queue.put({"n": n, "padding": "x" * 65536})
    finally:
        done.set()
        reader.join(timeout=30)
    assert torn == []
    bodies = [json.loads(path.read_bytes()) for path in tmp_path.glob("*.race.msg")]
    assert len(bodies) == sent and list(tmp_path.glob("*.part")) == []
