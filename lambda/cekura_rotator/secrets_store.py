"""The Secrets Manager port: describe, read by stage or version, put pending, move labels.

It knows nothing of Cekura. Every read names a `VersionStage` or `VersionId`: moto and AWS
disagree on which version an unqualified read returns after a label move.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError, ParamValidationError

from cekura_rotator.errors import ConfigError, SecretsStoreError

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

CURRENT = "AWSCURRENT"
PENDING = "AWSPENDING"
PREVIOUS = "AWSPREVIOUS"


@dataclass(frozen=True, slots=True)
class SecretDescription:
    """What DescribeSecret says about a secret, reduced to what rotation needs."""

    arn: str
    name: str
    rotation_enabled: bool
    rotation_lambda_arn: str | None
    versions: Mapping[str, tuple[str, ...]]
    next_rotation: datetime | None = None
    last_rotated: datetime | None = None

    def version_with(self, stage: str) -> str | None:
        """The version carrying `stage`, if any."""
        return next((v for v, stages in self.versions.items() if stage in stages), None)

    def stages_of(self, version_id: str) -> tuple[str, ...]:
        """The labels on a version (empty when it carries none or does not exist)."""
        return self.versions.get(version_id, ())


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version as ListSecretVersionIds lists it (deprecated ones included)."""

    version_id: str
    stages: tuple[str, ...]
    created: datetime | None


# The first botocore whose PutSecretValue sends RotationToken, which a rotation's writes need.
MIN_BOTOCORE = "1.34.125"


class SecretsStore:
    """Secrets Manager, through a boto3 client passed in."""

    def __init__(self, boto3_client: SecretsManagerClient):
        self._client = boto3_client

    def require_rotation_token(self) -> None:
        """Raise ConfigError unless this SDK sends RotationToken with PutSecretValue.

        The function uses the AWS SDK of the Lambda runtime; an older one would silently drop the
        token, and Secrets Manager would refuse every write of a rotation.
        """
        shape = self._client.meta.service_model.operation_model("PutSecretValue").input_shape
        if shape is None or "RotationToken" not in shape.members:
            import botocore

            raise ConfigError(
                f"the runtime's botocore {botocore.__version__} does not send RotationToken with "
                f"PutSecretValue (botocore >= {MIN_BOTOCORE} does): bundle an SDK by adding the "
                "lines of requirements-aws.txt to requirements.txt, then sam build and deploy"
            )

    def describe(self, secret_id: str) -> SecretDescription:
        """DescribeSecret, reduced."""
        out = aws_call("DescribeSecret", self._client.describe_secret, SecretId=secret_id)
        return SecretDescription(
            arn=out["ARN"],
            name=out["Name"],
            rotation_enabled=bool(out.get("RotationEnabled")),
            rotation_lambda_arn=out.get("RotationLambdaARN") or None,
            versions={v: tuple(s) for v, s in out.get("VersionIdsToStages", {}).items()},
            next_rotation=out.get("NextRotationDate"),
            last_rotated=out.get("LastRotatedDate"),
        )

    def read(
        self, secret_id: str, *, stage: str | None = None, version_id: str | None = None
    ) -> str | bytes | None:
        """The value of the version named by `stage` and/or `version_id`; None if it has none."""
        if stage is None and version_id is None:
            raise ValueError("name a VersionStage or a VersionId: unqualified reads are ambiguous")
        kwargs: dict[str, Any] = {"SecretId": secret_id}
        if stage is not None:
            kwargs["VersionStage"] = stage
        if version_id is not None:
            kwargs["VersionId"] = version_id
        try:
            out = aws_call("GetSecretValue", self._client.get_secret_value, **kwargs)
        except SecretsStoreError as e:
            if e.code == "ResourceNotFoundException":
                return None
            raise
        if "SecretString" in out:
            return str(out["SecretString"])
        binary = out.get("SecretBinary")
        return bytes(binary) if binary is not None else None

    def put_pending(
        self, secret_id: str, *, token: str, value: str, rotation_token: str | None
    ) -> None:
        """Store `value` as the AWSPENDING version named by `token`."""
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "ClientRequestToken": token,
            "SecretString": value,
            "VersionStages": [PENDING],
        }
        if rotation_token:
            kwargs["RotationToken"] = rotation_token
        aws_call("PutSecretValue", self._client.put_secret_value, **kwargs)

    def move_stage(
        self, secret_id: str, *, stage: str, to_version: str | None, from_version: str | None
    ) -> None:
        """Move (or, without `to_version`, remove) a label."""
        kwargs: dict[str, Any] = {"SecretId": secret_id, "VersionStage": stage}
        if to_version is not None:
            kwargs["MoveToVersionId"] = to_version
        if from_version is not None:
            kwargs["RemoveFromVersionId"] = from_version
        aws_call("UpdateSecretVersionStage", self._client.update_secret_version_stage, **kwargs)

    def list_versions(self, secret_id: str) -> list[VersionInfo]:
        """Every version with its labels and creation date, deprecated ones too (DescribeSecret
        names only labelled versions, and no dates)."""
        found: list[VersionInfo] = []
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "IncludeDeprecated": True,
            "MaxResults": 100,
        }
        while True:
            page = aws_call("ListSecretVersionIds", self._client.list_secret_version_ids, **kwargs)
            found += [
                VersionInfo(
                    str(v["VersionId"]), tuple(v.get("VersionStages", ())), v.get("CreatedDate")
                )
                for v in page.get("Versions", [])
            ]
            if not page.get("NextToken"):
                return found
            kwargs["NextToken"] = page["NextToken"]

    # -- the fleet, for the health check and the CLI: details, listing, rotating ---------------
    # (the same methods, with the same shapes, as the operator CLI's branch adds)

    def describe_details(self, secret_id: str) -> SecretDetails:
        """DescribeSecret, with what an operator is shown besides the rotation's needs."""
        return _details(
            aws_call("DescribeSecret", self._client.describe_secret, SecretId=secret_id)
        )

    def list_secrets(self) -> Iterator[SecretDetails]:
        """Every secret of the account and region (ListSecrets, 100 a page, all pages)."""
        kwargs: dict[str, Any] = {"MaxResults": 100}
        while True:
            page = aws_call("ListSecrets", self._client.list_secrets, **kwargs)
            yield from (_details(item) for item in page.get("SecretList", []))
            if not page.get("NextToken"):
                return
            kwargs["NextToken"] = page["NextToken"]

    def read_with_date(
        self, secret_id: str, *, version_id: str
    ) -> tuple[str | bytes | None, datetime | None]:
        """A version's value (None if it has none) and when the version was created."""
        try:
            out = aws_call(
                "GetSecretValue",
                self._client.get_secret_value,
                SecretId=secret_id,
                VersionId=version_id,
            )
        except SecretsStoreError as e:
            if e.code == "ResourceNotFoundException":
                return None, None
            raise
        created = out.get("CreatedDate")
        if "SecretString" in out:
            return str(out["SecretString"]), created
        binary = out.get("SecretBinary")
        return (bytes(binary) if binary is not None else None), created

    def create_secret(
        self,
        name: str,
        *,
        value: str,
        token: str,
        description: str | None = None,
        kms_key_id: str | None = None,
    ) -> tuple[str, str]:
        """CreateSecret with `value` as its AWSCURRENT version; returns (ARN, version id)."""
        kwargs: dict[str, Any] = {"Name": name, "SecretString": value, "ClientRequestToken": token}
        if description is not None:
            kwargs["Description"] = description
        if kms_key_id is not None:
            kwargs["KmsKeyId"] = kms_key_id
        out = aws_call("CreateSecret", self._client.create_secret, **kwargs)
        return str(out["ARN"]), str(out["VersionId"])

    def put_current(self, secret_id: str, *, value: str, token: str) -> str:
        """Store `value` as a new AWSCURRENT version (PutSecretValue); returns its version id."""
        out = aws_call(
            "PutSecretValue",
            self._client.put_secret_value,
            SecretId=secret_id,
            SecretString=value,
            ClientRequestToken=token,
        )
        return str(out["VersionId"])

    def start_rotation(
        self,
        secret_id: str,
        *,
        token: str,
        function_arn: str,
        rules: Mapping[str, Any] | None = None,
        immediately: bool = True,
    ) -> None:
        """RotateSecret with the new version's id chosen by the caller (`token`).

        With `immediately=False` Secrets Manager runs only testSecret (a configuration check).
        """
        kwargs: dict[str, Any] = {
            "SecretId": secret_id,
            "ClientRequestToken": token,
            "RotationLambdaARN": function_arn,
            "RotateImmediately": immediately,
        }
        if rules is not None:
            kwargs["RotationRules"] = dict(rules)
        aws_call("RotateSecret", self._client.rotate_secret, **kwargs)


def aws_call(operation: str, method: Any, **kwargs: Any) -> Any:
    """Call an AWS client method, turning every failure into SecretsStoreError."""
    try:
        return method(**kwargs)
    except ClientError as e:
        error = e.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        # AWS messages name ids and labels, never values; kept for the operator.
        message = str(error.get("Message", "")).strip()[:300]
        raise SecretsStoreError(
            f"Secrets Manager {operation} failed: {code}: {message}",
            code=code,
            operation=operation,
        ) from e
    except ParamValidationError:
        # Its text can quote parameter values, and SecretString is one of them.
        raise SecretsStoreError(
            f"Secrets Manager {operation} was given an invalid parameter",
            code="ParamValidationError",
            operation=operation,
        ) from None
    except BotoCoreError as e:
        raise SecretsStoreError(
            f"Secrets Manager {operation} failed: {type(e).__name__}: {e}",
            code=type(e).__name__,
            operation=operation,
        ) from e


# -- what the operator calls return -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SecretDetails:
    """A secret as DescribeSecret or ListSecrets shows it to an operator."""

    secret: SecretDescription
    rotation_rules: Mapping[str, Any]
    deleted_date: datetime | None = None
    kms_key_id: str | None = None


def _details(out: Mapping[str, Any]) -> SecretDetails:
    # DescribeSecret names the versions VersionIdsToStages, ListSecrets SecretVersionsToStages.
    stages = out.get("VersionIdsToStages", out.get("SecretVersionsToStages")) or {}
    return SecretDetails(
        secret=SecretDescription(
            arn=str(out["ARN"]),
            name=str(out["Name"]),
            rotation_enabled=bool(out.get("RotationEnabled")),
            rotation_lambda_arn=out.get("RotationLambdaARN") or None,
            versions={str(v): tuple(s) for v, s in stages.items()},
            next_rotation=out.get("NextRotationDate"),
            last_rotated=out.get("LastRotatedDate"),
        ),
        rotation_rules=dict(out.get("RotationRules") or {}),
        deleted_date=out.get("DeletedDate"),
        kms_key_id=out.get("KmsKeyId") or None,
    )
