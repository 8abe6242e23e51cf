"""Stored results -> what clients see: storage keys become expiring links, internal fields are dropped."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request

from api.schemas import DetectResultView, PersonView
from facequeue.schemas import DetectResult, FaceFrame, Person
from facequeue.settings import Settings
from facequeue.storage import MediaStorage

LinkFn = Callable[[str], str]


def link_maker(storage: MediaStorage, settings: Settings, request: Request) -> LinkFn:
    base_url = settings.public_base_url or str(request.base_url)
    return lambda key: storage.url_for(key, base_url)


def frames_with_links(result: DetectResult, link: LinkFn) -> dict[str, FaceFrame]:
    """faces_obj with `face_urls` filled from the stored crop keys (seed 000, return_face_url)."""
    if result.crop_keys is None:
        return result.faces_obj
    return {
        key: frame.model_copy(update={"face_urls": [link(crop) for crop in result.crop_keys.get(key, [])]})
        for key, frame in result.faces_obj.items()
    }


def person_view(person: Person, link: LinkFn) -> PersonView:
    return PersonView(
        **person.model_dump(exclude={"face_key"}), face_url=link(person.face_key) if person.face_key else None
    )


def result_view(result: DetectResult, link: LinkFn) -> DetectResultView:
    return DetectResultView(
        faces_obj=frames_with_links(result, link),
        scores=result.scores,
        media=result.media,
        detector=result.detector,
        frame_count=result.frame_count,
        face_shape_set=result.face_shape_set,
        persons=[person_view(person, link) for person in result.persons] if result.persons is not None else None,
    )
