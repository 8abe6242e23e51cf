"""A task's life outside the vision pipeline: publish after commit, finalize, billing, dispatch, the webhook
outbox, the reaper, previews and retention. The Celery app they publish through and the database sessions
they run in are plumbing (`facequeue/plumbing/`).

It sits above `db/` and below both `api/` and `workers/` because both sides drive the same
lifecycle: the API submits, cancels and redelivers; a worker finishes a task and schedules a
webhook retry; the reaper (run by the API or the CLI) recovers lost work. Each of these is a
transaction plus a publish, so keeping them here lets neither side import the other.
"""
