"""The floor the real rotator is measured against: the four steps and the policy's essentials.

One create call and one validate call at Cekura, the Secrets Manager calls a correct rotation
cannot do without, no retries, no logging, no metrics. Revocation follows BENCH_MINIMAL_POLICY
(default `off`, so the loopback figures compare against a rotator that never revokes):
- `grace`: finishSecret also reads the AWSPREVIOUS version (before AWSCURRENT moves, so the key
  two rotations old) and deletes its key at Cekura;
- `immediate`: finishSecret also reads the superseded version and deletes its key;
- `off`: nothing more.
Each delete is authorised by the key being deleted (it is still live: that is why it is deleted),
so revoking costs one read and one DELETE, the fewest possible. The real rotator authorises with
the new key and checks that no kept version still holds the old one; those are its extra calls.

Plain boto3 and httpx, clients made on first use and kept for the container, as the real handler
does. It is a yardstick, not a rotator to deploy: it trusts the secret's shape and stops at the
first error.

Only boto3 and httpx are imported here, so a cold start of this module costs what the two
libraries cost and no more.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import boto3
import httpx

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

KEYS_PATH = "/user/api/v1/user-api-key/"
VALIDATE_PATH = "/app/otel/validate/"
AUTH_HEADER = "X-CEKURA-API-KEY"
CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"
POLICY_ENV = "BENCH_MINIMAL_POLICY"
POLICIES = ("grace", "immediate", "off")

_clients: tuple[SecretsManagerClient, httpx.Client, str] | None = None


def reset() -> None:
    """Forget the clients, so the next step starts like a fresh container would."""
    global _clients  # noqa: PLW0603  # a Lambda container's state is module state
    if _clients is not None:
        _clients[1].close()
    _clients = None


def _get_clients() -> tuple[SecretsManagerClient, httpx.Client, str]:
    global _clients  # noqa: PLW0603
    if _clients is None:
        _clients = (
            boto3.client("secretsmanager"),
            httpx.Client(trust_env=False, timeout=15.0),
            os.environ["CEKURA_API_URL"].rstrip("/"),
        )
    return _clients


def lambda_handler(event: dict[str, Any], context: Any) -> None:
    """Run one rotation step; any error propagates and fails the step."""
    sm, http, base = _get_clients()
    arn, token, step = event["SecretId"], event["ClientRequestToken"], event["Step"]
    # Every step is its own invocation, so each must learn the labels afresh: the guard needs
    # them, and finishSecret needs to know which version is AWSCURRENT.
    versions = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    stages = versions.get(token, [])
    if CURRENT in stages:
        return
    if PENDING not in stages:
        raise ValueError(f"version {token} is not AWSPENDING")
    if step == "createSecret":
        _create(sm, http, base, event)
    elif step == "testSecret":
        pending = _value(sm, arn, stage=PENDING, version=token)
        response = http.get(
            base + VALIDATE_PATH,
            headers={AUTH_HEADER: pending["api_key"]},
            params={"project_id": str(pending["project_id"])},
        )
        response.raise_for_status()
    elif step == "finishSecret":
        policy = policy_from_env()
        old = next(v for v, s in versions.items() if CURRENT in s)
        previous = next((v for v, s in versions.items() if PREVIOUS in s), None)
        if policy == "grace" and previous is not None:
            _revoke(sm, http, base, arn, previous)
        sm.update_secret_version_stage(
            SecretId=arn, VersionStage=CURRENT, MoveToVersionId=token, RemoveFromVersionId=old
        )
        # moto refuses the next RotateSecret while AWSPENDING sits on the AWSCURRENT version;
        # the real handler drops the label too, so the floor pays the same call.
        sm.update_secret_version_stage(
            SecretId=arn, VersionStage=PENDING, RemoveFromVersionId=token
        )
        if policy == "immediate":
            _revoke(sm, http, base, arn, old)
    # setSecret: Cekura keys are live once created, so there is nothing to push.


def policy_from_env() -> str:
    """The revocation policy this rotator follows (BENCH_MINIMAL_POLICY, default `off`)."""
    policy = os.environ.get(POLICY_ENV, "").strip().lower() or "off"
    if policy not in POLICIES:
        raise ValueError(f"{POLICY_ENV} must be one of {', '.join(POLICIES)}, not {policy!r}")
    return policy


def _revoke(
    sm: SecretsManagerClient, http: httpx.Client, base: str, arn: str, version: str
) -> None:
    """Read a version's key and delete it at Cekura, authorised by that key itself."""
    old = json.loads(sm.get_secret_value(SecretId=arn, VersionId=version)["SecretString"])
    response = http.delete(
        f"{base}{KEYS_PATH}{old['key_id']}/", headers={AUTH_HEADER: old["api_key"]}
    )
    response.raise_for_status()


def _create(sm: SecretsManagerClient, http: httpx.Client, base: str, event: dict[str, Any]) -> None:
    arn, token = event["SecretId"], event["ClientRequestToken"]
    # A retried createSecret must not mint a second key: a stored pending value ends the step.
    try:
        sm.get_secret_value(SecretId=arn, VersionId=token, VersionStage=PENDING)
    except sm.exceptions.ResourceNotFoundException:
        pass
    else:
        return
    current = _value(sm, arn, stage=CURRENT)
    response = http.post(
        base + KEYS_PATH,
        headers={AUTH_HEADER: current["api_key"]},
        json={"name": f"minimal-{token[:8]}", "project": current["project_id"]},
    )
    response.raise_for_status()
    minted = response.json()
    value = {**current, "api_key": minted["key"], "key_id": minted["id"]}
    kwargs: dict[str, Any] = {}
    if event.get("RotationToken"):
        kwargs["RotationToken"] = event["RotationToken"]
    sm.put_secret_value(
        SecretId=arn,
        ClientRequestToken=token,
        SecretString=json.dumps(value),
        VersionStages=[PENDING],
        **kwargs,
    )


def _value(
    sm: SecretsManagerClient, arn: str, *, stage: str, version: str | None = None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"SecretId": arn, "VersionStage": stage}
    if version is not None:
        kwargs["VersionId"] = version
    parsed: dict[str, Any] = json.loads(sm.get_secret_value(**kwargs)["SecretString"])
    return parsed
