"""Project-wide pieces that both the API and the workers need: settings, result schemas, error codes, storage."""
