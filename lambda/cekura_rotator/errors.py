"""The exception types the rotator raises on purpose.

Every message names what went wrong in words an operator can act on. None ever carries key
material: messages are built from ids, names, status codes and Cekura's `detail` text (which the
Cekura client scrubs of the key it sent).
"""

from __future__ import annotations


class RotatorError(Exception):
    """Base of every error the rotator raises on purpose."""

    def __init__(self, message: str, *, secret_id: str | None = None, step: str | None = None):
        super().__init__(message)
        self.message = message
        self.secret_id = secret_id
        self.step = step

    def bind(self, *, secret_id: str | None, step: str | None) -> RotatorError:
        """Attach the secret and step, keeping any the raiser already set."""
        self.secret_id = self.secret_id or secret_id
        self.step = self.step or step
        return self

    def __str__(self) -> str:
        where = " ".join(
            part
            for part in (
                f"step={self.step}" if self.step else "",
                f"secret={self.secret_id}" if self.secret_id else "",
            )
            if part
        )
        return f"[{where}] {self.message}" if where else self.message


class ConfigError(RotatorError):
    """An environment variable of the Lambda holds an invalid value."""


class EventError(RotatorError):
    """The invocation event is not a well-formed rotation event."""


class RotationStateError(RotatorError):
    """The secret is not in a state in which this step may run."""


class SecretFormatError(RotatorError):
    """A secret version's value is not in the documented format."""


class AdminSecretError(RotatorError):
    """The admin secret is not allowed, cannot be read, is badly formed, or Cekura refuses it."""


class SecretsStoreError(RotatorError):
    """Secrets Manager refused or failed a call."""

    # Answers that prove a write changed nothing. Only errors botocore does not retry qualify:
    # after a retried throttle, 5xx or timeout, an earlier attempt may have been carried out.
    _REJECTED = frozenset(
        {
            "AccessDeniedException",
            "DecryptionFailure",
            "EncryptionFailure",
            "InvalidParameterException",
            "InvalidRequestException",
            "LimitExceededException",
            "ParamValidationError",
            "ResourceExistsException",
            "ResourceNotFoundException",
            "ValidationException",
        }
    )

    def __init__(self, message: str, *, code: str, operation: str):
        super().__init__(message)
        self.code = code
        self.operation = operation

    @property
    def rejected(self) -> bool:
        """True when the call certainly did nothing."""
        return self.code in self._REJECTED


class CekuraError(RotatorError):
    """Cekura answered with an error, with something unusable, or not at all."""

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        super().__init__(message)
        self.status = status
        self.detail = detail


class CekuraRefusedError(CekuraError):
    """Category: Cekura will not do this for this credential (401, 403, 405)."""


class CekuraTransientError(CekuraError):
    """Category: Cekura failed for now (5xx, 429, timeouts); a later try may succeed."""


class CekuraAuthError(CekuraRefusedError):
    """Cekura rejected the credential (401)."""


class CekuraForbiddenError(CekuraRefusedError):
    """Cekura refused the operation for this credential (403)."""


class CekuraMethodNotAllowedError(CekuraRefusedError):
    """Cekura does not offer this operation here (405)."""


class CekuraNotFoundError(CekuraError):
    """Cekura has no such resource (404)."""


class CekuraRequestError(CekuraError):
    """Cekura rejected the request's content (400 and other 4xx)."""


class CekuraRateLimitedError(CekuraTransientError):
    """Cekura kept answering 429 until retries ran out."""


class CekuraUnavailableError(CekuraTransientError):
    """Cekura failed (5xx) or could not be reached, and retries ran out."""


class CekuraProtocolError(CekuraError):
    """Cekura's answer broke the API contract (shape, type, size or content type)."""


class OrphanKeyError(CekuraProtocolError):
    """Cekura created a key the rotator cannot use; its id is known, so it can be deleted."""

    def __init__(self, message: str, *, key_id: int):
        super().__init__(message, status=201)
        self.key_id = key_id


class KeyValidationError(RotatorError):
    """The pending key did not prove that it works for its project."""
