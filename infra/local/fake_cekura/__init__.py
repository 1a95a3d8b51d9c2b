"""A fake of the Cekura API endpoints the key rotator touches, served over real HTTP.

It runs in-process on 127.0.0.1 so the rotator's own HTTP client, timeouts and error handling
are exercised exactly as against the real service. Behaviour follows the OpenAPI excerpt beside
it, infra/local/fake_cekura/openapi-excerpt.json (cut from Cekura's public openapi.json).

Credentials: `X-CEKURA-API-KEY` carries an API key of one of Cekura's kinds (project, admin =
organization-wide, read-only); `Authorization: Bearer` carries a dashboard session
(`supabase_session`), which may do everything within its organization in every mode. The mode
says which operations read an API key at all:

- `spec`, the current spec: create, validate and projects; list, retrieve, update and delete
  want a session.
- `permissive`, the older spec: every operation, scoped to the key's project or organization.
- `nocreate`, the SDK's reading: as `spec`, but create refuses every API key with a 403.

Modules: `model` (tenancy and permission rules), `wire` (routing, bodies, JSON), `faults`
(scripted misbehaviour, rate limit), `server` (FakeCekura and its HTTP server).

Standalone, for manual poking:
    python -m infra.local.fake_cekura --port 8765 --mode spec --seed-project 1
"""

from infra.local.fake_cekura.faults import Fault
from infra.local.fake_cekura.model import (
    API_KEY_ROUTES,
    KEY_PREFIX,
    SESSION_PREFIX,
    SESSION_ROUTES,
    IssuedKey,
    KeyKind,
    KeyRecord,
    Mode,
    RouteName,
)
from infra.local.fake_cekura.server import FakeCekura, main
from infra.local.fake_cekura.wire import API_KEY_HEADER, MAX_BODY_BYTES, CredentialKind, SeenRequest

__all__ = [
    "API_KEY_HEADER",
    "API_KEY_ROUTES",
    "KEY_PREFIX",
    "MAX_BODY_BYTES",
    "SESSION_PREFIX",
    "SESSION_ROUTES",
    "CredentialKind",
    "FakeCekura",
    "Fault",
    "IssuedKey",
    "KeyKind",
    "KeyRecord",
    "Mode",
    "RouteName",
    "SeenRequest",
    "main",
]
