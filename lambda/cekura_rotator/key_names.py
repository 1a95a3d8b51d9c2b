"""How the rotator names the keys it mints, and how a name is read back.

`<prefix>-<secret name>-<8 hex of the secret's ARN hash>-<first 8 of the version id>`: every key
minted for a secret starts with its stem, and the tag at the end leads back to the version (the
rotation) it was minted for. The CLI imports this module; nothing else spells the format.
"""

from __future__ import annotations

import hashlib
import re

TAG_CHARS = 8
ARN_TAG_CHARS = 8
MAX_KEY_NAME = 120


def key_stem(prefix: str, secret_name: str, secret_arn: str) -> str:
    """`<prefix>-<secret name>-<8 hex of the ARN's hash>-`. The name may be cut short; the ARN's
    hash tells apart secrets whose names share a beginning, or live in another account or region.
    """
    arn_tag = hashlib.sha256(secret_arn.encode()).hexdigest()[:ARN_TAG_CHARS]
    room = MAX_KEY_NAME - len(prefix) - ARN_TAG_CHARS - TAG_CHARS - 3
    name = re.sub(r"[^A-Za-z0-9_.@/+=-]", "_", secret_name)[:room]
    return f"{prefix}-{name}-{arn_tag}-"


def key_name(stem: str, version_id: str) -> str:
    """The name of the key minted for `version_id`."""
    return stem + version_id[:TAG_CHARS]


def tag_of(name: str, stem: str) -> str | None:
    """The version tag of a key minted for the secret whose stem this is; None for any other."""
    if not name.startswith(stem) or len(name) != len(stem) + TAG_CHARS:
        return None
    return name[len(stem) :]


def minted_for(name: str | None, stem: str, version_id: str) -> bool:
    """Whether a key of this name was minted by the rotator for this very version."""
    return name is not None and tag_of(name, stem) == version_id[:TAG_CHARS]
