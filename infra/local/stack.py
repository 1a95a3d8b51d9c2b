"""The local stack: moto server and the fake Cekura over HTTP on 127.0.0.1, plus seeding.

Used by the end-to-end tests, the demo and the benchmarks. The handler runs in this process,
invoked by moto's RotateSecret through the bridge, and talks to moto server over HTTP exactly as
it would talk to Secrets Manager.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import uuid
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import boto3
import httpx

from infra.local.fake_cekura import FakeCekura, Mode
from infra.local.lambda_bridge import ACCOUNT_ID, FUNCTION_ARN, FUNCTION_NAME, REGION, LambdaBridge

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto's conventional dummy
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


def create_function(endpoint_url: str | None = None) -> str:
    """Register the rotation function with moto's Lambda (which needs its IAM role to exist).

    Safe to call again: an existing role or function is kept.
    """
    kwargs: dict[str, Any] = {"region_name": REGION}
    if endpoint_url:
        kwargs["endpoint_url"] = endpoint_url
    iam = boto3.client("iam", **kwargs)
    role_name = f"{FUNCTION_NAME}-role"
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(
            RoleName=role_name,
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("cekura_rotator/handler.py", "# moto never runs this\n")
    lam = boto3.client("lambda", **kwargs)
    with contextlib.suppress(lam.exceptions.ResourceConflictException):
        lam.create_function(
            FunctionName=FUNCTION_NAME,
            Runtime="python3.13",
            Role=iam.get_role(RoleName=role_name)["Role"]["Arn"],
            Handler="cekura_rotator.handler.lambda_handler",
            Code={"ZipFile": code.getvalue()},
        )
    return FUNCTION_ARN


def enable_rotation(
    client: SecretsManagerClient, secret_id: str, *, function_arn: str = FUNCTION_ARN
) -> None:
    """Attach the rotation function without rotating (moto runs testSecret, like AWS).

    AWS removes the AWSPENDING label its configuration test created; moto leaves it on a version
    that is not AWSCURRENT, so it is removed here to reach AWS's end state.
    """
    client.rotate_secret(
        SecretId=secret_id,
        RotationLambdaARN=function_arn,
        RotationRules={"AutomaticallyAfterDays": 30},
        RotateImmediately=False,
    )
    drop_stale_pending(client, secret_id)


def drop_stale_pending(client: SecretsManagerClient, secret_id: str) -> None:
    """Remove AWSPENDING from a version that is not AWSCURRENT (a test or cancelled rotation)."""
    versions = client.describe_secret(SecretId=secret_id)["VersionIdsToStages"]
    for version, stages in versions.items():
        if "AWSPENDING" in stages and "AWSCURRENT" not in stages:
            client.update_secret_version_stage(
                SecretId=secret_id, VersionStage="AWSPENDING", RemoveFromVersionId=version
            )


def secret_json(api_key: str, project_id: int, **extra: Any) -> str:
    """A secret value in the documented JSON format."""
    return json.dumps({"api_key": api_key, "project_id": project_id, **extra})


# -- admin secrets ----------------------------------------------------------------------------

AdminKind = Literal["api_key", "bearer_token"]
ADMIN_KINDS: tuple[AdminKind, ...] = ("api_key", "bearer_token")


@dataclass(frozen=True)
class AdminSecret:
    """An admin secret stored in Secrets Manager, and the credential it holds (never in repr)."""

    arn: str
    kind: AdminKind
    credential: str = field(repr=False)

    def env(self, *also_allowed: str) -> dict[str, str]:
        """The function's environment with this admin secret as the default."""
        return admin_env(self.arn, *also_allowed)


def delete_in_dashboard(fake: FakeCekura, key_id: int, *, project_id: int) -> str:
    """What a person signed in to Cekura's dashboard does (after a leak, say): delete a key with
    their session, over HTTP like any client. Returns the session, for scanning outputs."""
    session = fake.issue_session(project_id)
    httpx.delete(
        f"{fake.url}/user/api/v1/user-api-key/{key_id}/",
        headers={"Authorization": f"Bearer {session}"},
    ).raise_for_status()
    return session


def admin_env(default: str | None, *allowed: str) -> dict[str, str]:
    """CEKURA_ADMIN_SECRET_ARN and CEKURA_ALLOWED_ADMIN_SECRET_ARNS, as the template sets them
    from `AdminSecretArns` (the first entry is the default; every entry is allowed)."""
    arns = [arn for arn in (default, *allowed) if arn]
    return {
        "CEKURA_ADMIN_SECRET_ARN": default or "",
        "CEKURA_ALLOWED_ADMIN_SECRET_ARNS": ",".join(dict.fromkeys(arns)),
    }


def admin_secret_json(
    kind: AdminKind, credential: str, *, projects: Iterable[int] | None = None
) -> str:
    """An admin secret's value: `{"api_key": ...}` or `{"bearer_token": ...}`, maybe `projects`."""
    document: dict[str, Any] = {kind: credential}
    if projects is not None:
        document["projects"] = list(projects)
    return json.dumps(document)


def create_admin_secret(
    client: SecretsManagerClient,
    fake: FakeCekura,
    kind: AdminKind,
    *,
    project_id: int | None = None,
    organization: str | None = None,
    projects: Iterable[int] | None = None,
    name: str | None = None,
) -> AdminSecret:
    """An admin credential for the organization of `project_id` (or `organization`), stored as
    an admin secret: an organization-wide admin API key (`api_key`) or a dashboard session
    (`bearer_token`) issued by the fake Cekura."""
    if kind == "bearer_token":
        credential = fake.issue_session(project_id, organization=organization)
    else:
        issued = fake.issue_key(project_id, "admin", organization=organization, kind="admin")
        credential = issued.key
    arn = client.create_secret(
        Name=name or f"cekura/admin-{uuid.uuid4().hex[:8]}",
        SecretString=admin_secret_json(kind, credential, projects=projects),
    )["ARN"]
    return AdminSecret(arn, kind, credential)


@dataclass
class LocalStack:
    """Handles on the running stand-ins."""

    moto_url: str
    fake: FakeCekura
    bridge: LambdaBridge

    def client(self) -> SecretsManagerClient:
        """A Secrets Manager client for moto server."""
        return boto3.client("secretsmanager", region_name=REGION, endpoint_url=self.moto_url)

    def handler_env(self, **overrides: str) -> dict[str, str]:
        """The environment the handler reads, pointed at the stand-ins."""
        return {
            **DUMMY_CREDENTIALS,
            "AWS_ENDPOINT_URL_SECRETS_MANAGER": self.moto_url,
            "CEKURA_API_URL": self.fake.url,
            "CEKURA_VALIDATE_MAX_WAIT": "5",
            "POWERTOOLS_METRICS_NAMESPACE": "CekuraRotator",
            "POWERTOOLS_SERVICE_NAME": "cekura-rotator",
            **overrides,
        }

    def create_admin_secret(
        self,
        kind: AdminKind,
        *,
        project_id: int | None = None,
        organization: str | None = None,
        projects: Iterable[int] | None = None,
    ) -> AdminSecret:
        """An admin secret in moto server holding a credential the fake Cekura issued."""
        return create_admin_secret(
            self.client(),
            self.fake,
            kind,
            project_id=project_id,
            organization=organization,
            projects=projects,
        )

    @contextmanager
    def function_env(self, values: Mapping[str, str]) -> Iterator[None]:
        """The function redeployed with these variables for the block: the in-process handler
        builds its rotator again from the environment, before and after."""
        from cekura_rotator import handler

        with patched_environ(values):
            handler.rotator.cache_clear()
            try:
                yield
            finally:
                handler.rotator.cache_clear()


@contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the block, restoring the old ones after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def local_stack(
    *,
    mode: Mode = "spec",
    env: Mapping[str, str] | None = None,
    secret_id_as: Literal["arn", "name"] = "arn",
) -> Iterator[LocalStack]:
    """Start moto server and the fake Cekura; route RotateSecret to the real handler."""
    from moto.server import ThreadedMotoServer

    from cekura_rotator import handler

    # werkzeug logs every request moto server answers: noise in tests, the demo and benchmarks.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    moto_url = f"http://{host}:{port}"
    fake = FakeCekura(mode=mode).start()
    bridge = LambdaBridge(handler=handler.lambda_handler, secret_id_as=secret_id_as)
    stack = LocalStack(moto_url=moto_url, fake=fake, bridge=bridge)
    try:
        with patched_environ({**stack.handler_env(), **(env or {})}), bridge.patched():
            # moto server shares this process's backends: start from a clean account.
            httpx.post(f"{moto_url}/moto-api/reset")
            httpx.post(f"{moto_url}/moto-api/config", json={"lambda": {"use_docker": False}})
            handler.rotator.cache_clear()
            create_function(moto_url)
            yield stack
    finally:
        handler.rotator.cache_clear()
        fake.stop()
        server.stop()


__all__ = [
    "ACCOUNT_ID",
    "ADMIN_KINDS",
    "FUNCTION_ARN",
    "AdminKind",
    "AdminSecret",
    "LocalStack",
    "admin_env",
    "admin_secret_json",
    "create_admin_secret",
    "create_function",
    "drop_stale_pending",
    "enable_rotation",
    "local_stack",
    "secret_json",
]
