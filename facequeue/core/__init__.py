"""The core every layer stands on: settings, schemas, enums, error codes, logging, storage, the SSRF guard and
webhook signing. It imports nothing of facequeue's above it."""
