"""The process plumbing both sides share, with no task rules of its own: the Celery app and the broker's Redis
(`broker.py`), the process's database sessions (`sessions.py`), metric definitions and how a process exposes
them (`metrics.py`, `exposition.py`), worker liveness for /readyz, the backlog gauges read at scrape time,
and the live task events carried through Redis (`task_events.py`)."""
