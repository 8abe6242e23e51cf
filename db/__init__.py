"""Task store: the SQLAlchemy models, engine setup, and one repository module per aggregate.

`tasks` (detect tasks), `batches`, `tenants` (and their API keys), `credits`, `flags` and
`deliveries` (the webhook outbox and its log). Nothing here reads the settings on its own or
publishes anything: that is the lifecycle's job.
"""
