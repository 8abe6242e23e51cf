"""Batch-wide persons (a batch submitted with `persons: true`): the persons each item found on its own grouped by
identity across the batch, incrementally as items finish, DBSCAN-like as Immich clusters faces.

When an item finishes, each of its persons looks for the batch's persons of OTHER items within SAME_PERSON cosine
(two persons of one item are two people: the item's own grouping kept them apart). With MIN_NEIGHBOURS such
neighbours or more it is a core point: it takes the batch person of its most similar neighbour that has one, or
starts a new one, and its neighbours without one join it. A person with fewer waits for the batch's end; then, in
submit order, each joins its most similar neighbour's batch person, or starts one of its own.

The batch row is locked before an item's persons join, so two items finishing at once never start two batch
persons for one stranger. How SAME_PERSON and MIN_NEIGHBOURS were chosen: docs/api/batches.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.face_models import BatchItemPerson
from db.models import Batch, DetectTask, url_safe_id

# On the shared data: the 10 single-face clips' persons are 0.73 or more like their own faces and 0.31 at most
# like each other; the identity photos make no false match from 0.5 (BENCHMARKS.md, bench search).
SAME_PERSON = 0.5
# Immich's minFaces is 3 with the face itself; a person seen in two items only joins at the batch's end.
MIN_NEIGHBOURS = 2


@dataclass(frozen=True)
class ItemPerson:
    """A person of one item, as the item's result names it, with the mean of its identifiable faces' embeddings."""

    person_id: str
    embedding: np.ndarray
    time_ranges: list[list[float]]


@dataclass(frozen=True)
class Appearance:
    """Where a batch person appears: one item's person."""

    position: int
    name: str | None
    detect_task_id: str
    person_id: str
    time_ranges: list[list[float]]


def join(session: Session, batch_id: str, task_id: str, persons: Sequence[ItemPerson]) -> None:
    """Add a finished item's persons to the batch's, in the transaction of the item's final status."""
    if not persons:
        return
    session.execute(select(Batch.id).where(Batch.id == batch_id).with_for_update())
    for person in persons:
        neighbours = _neighbours(session, batch_id, task_id, person.embedding)
        row = BatchItemPerson(
            batch_id=batch_id,
            task_id=task_id,
            person_id=person.person_id,
            embedding=person.embedding,
            time_ranges=person.time_ranges,
        )
        if len(neighbours) >= MIN_NEIGHBOURS:
            named = next((found for _, found in neighbours if found is not None), None) or _new_person_id()
            row.batch_person_id = named
            waiting = [row_id for row_id, found in neighbours if found is None]
            if waiting:
                session.execute(
                    update(BatchItemPerson).where(BatchItemPerson.id.in_(waiting)).values(batch_person_id=named)
                )
        session.add(row)
        session.flush()


def settle(session: Session, batch_id: str) -> None:
    """At the batch's end (its row locked by batches.finish_if_complete): every person still waiting joins its most
    similar neighbour's batch person, or starts its own."""
    waiting = session.scalars(
        select(BatchItemPerson)
        .join(DetectTask, DetectTask.id == BatchItemPerson.task_id)
        .where(BatchItemPerson.batch_id == batch_id, BatchItemPerson.batch_person_id.is_(None))
        .order_by(DetectTask.batch_position, BatchItemPerson.id)
    ).all()
    for row in waiting:
        named = [found for _, found in _neighbours(session, row.batch_id, row.task_id, row.embedding) if found]
        row.batch_person_id = named[0] if named else _new_person_id()
        session.flush()


def appearances(session: Session, batch_id: str) -> Iterator[tuple[str, list[Appearance]]]:
    """Each batch person with the items' persons it is, in submit order; persons by their first item."""
    first = func.min(DetectTask.batch_position).over(partition_by=BatchItemPerson.batch_person_id)
    rows = session.execute(
        select(
            BatchItemPerson.batch_person_id,
            DetectTask.batch_position,
            DetectTask.item_name,
            DetectTask.id,
            BatchItemPerson.person_id,
            BatchItemPerson.time_ranges,
        )
        .join(DetectTask, DetectTask.id == BatchItemPerson.task_id)
        .where(BatchItemPerson.batch_id == batch_id, BatchItemPerson.batch_person_id.is_not(None))
        .order_by(first, BatchItemPerson.batch_person_id, DetectTask.batch_position, BatchItemPerson.id)
        .execution_options(yield_per=500)
    )
    for batch_person_id, group in itertools.groupby(rows, key=lambda row: row[0]):
        yield batch_person_id, [Appearance(*row[1:]) for row in group]


def _neighbours(session: Session, batch_id: str, task_id: str, embedding: np.ndarray) -> list[tuple[int, str | None]]:
    """(id, batch person) of the batch's persons of other items within SAME_PERSON of `embedding`, nearest first:
    an exact scan of the batch's rows (a batch holds thousands, not millions)."""
    distance = BatchItemPerson.embedding.cosine_distance(embedding)
    rows = session.execute(
        select(BatchItemPerson.id, BatchItemPerson.batch_person_id)
        .where(
            BatchItemPerson.batch_id == batch_id,
            BatchItemPerson.task_id != task_id,
            distance <= 1.0 - SAME_PERSON,
        )
        .order_by(distance)
    ).all()
    return [(row_id, found) for row_id, found in rows]


def _new_person_id() -> str:
    return "bp_" + url_safe_id(9)
