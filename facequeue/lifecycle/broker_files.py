"""The embedded broker: kombu's filesystem transport, with message files that appear whole.

kombu writes a message file in place, so a consumer listing the folder can take it while it is
still empty or half written, and the worker then stops on a JSON error. Here every message is
written under a temporary name and renamed into place: readers see it whole or not at all.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

SCHEME = "facequeue-files"


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:
        # the name kombu's reader looks for (<time>_<uuid>.<queue>.msg), sorted by time as kombu's are
        name = os.path.join(self.data_folder_out, f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg")
        partial = f"{name}.part"  # not a .msg name: readers skip it
        try:
            with open(partial, "wb") as file:
                file.write(str_to_bytes(dumps(payload)))
            os.replace(partial, name)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {name!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES[SCHEME] = f"{__name__}:Transport"
