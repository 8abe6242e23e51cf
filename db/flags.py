"""Service flags: operator switches shared by every API process (e.g. maintenance)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from db.models import ServiceFlag

MAINTENANCE_FLAG = "maintenance"  # "on": the API refuses new work (`facequeue maintenance on|off`)


def get_flag(session: Session, name: str) -> str | None:
    flag = session.get(ServiceFlag, name)
    return flag.value if flag else None


def set_flag(session: Session, name: str, value: str) -> None:
    flag = session.get(ServiceFlag, name)
    if flag is None:
        session.add(ServiceFlag(name=name, value=value))
    else:
        flag.value = value
