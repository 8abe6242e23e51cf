"""Loaded by schemathesis (SCHEMATHESIS_HOOKS): a JSONL manifest is a string in the document, sent as it is."""

import schemathesis

schemathesis.serializer.alias("application/x-ndjson", "text/plain")
