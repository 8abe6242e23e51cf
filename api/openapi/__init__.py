"""The OpenAPI document as a contract: security schemes, every status a route answers in its API's own
error shape, examples in every schema, readable operationIds, and the batch bodies (api/openapi/document.py)."""
