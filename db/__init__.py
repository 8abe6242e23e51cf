"""Task store: SQLAlchemy models, engine/session setup and the queries the API and workers share."""
