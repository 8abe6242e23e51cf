"""The API key's two headers as OpenAPI security schemes, so Swagger's "Try it out" sends the key.

They only declare: api/limits.py authenticates from the headers before the body is read, Bearer first
(api/auth.py). With auto_error off these dependencies never refuse a request, so there is one 401, in the
shape of the API the request addressed.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

KEY_PRECEDENCE = "If both Authorization and x-api-key are sent, Authorization is used and x-api-key ignored."

# The seed documents' own scheme names (seed 003)
bearer_scheme = HTTPBearer(
    scheme_name="BearerAuth", description=f"`Authorization: Bearer <API key>`. {KEY_PRECEDENCE}", auto_error=False
)
api_key_scheme = APIKeyHeader(
    name="x-api-key",
    scheme_name="ApiKeyAuth",
    description=f"`x-api-key: <API key>`. {KEY_PRECEDENCE}",
    auto_error=False,
)

BearerKey = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)]
HeaderKey = Annotated[str | None, Depends(api_key_scheme)]
