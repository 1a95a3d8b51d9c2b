"""Exit codes, and the one error type commands raise to stop with a message."""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

# Secrets Manager (and boto3 session) errors that mean the caller named something wrong, not
# that AWS failed.
_USAGE_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "ResourceExistsException",
        "ValidationException",
        "InvalidParameterException",
        "ParamValidationError",
        "NoRegionError",
        "ProfileNotFound",
    }
)


class CliError(Exception):
    """An error the CLI reports as one line, with the exit code it maps to."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def aws_exit_code(code: str, command: str) -> int:
    """The exit code for a failed AWS call."""
    if code in _USAGE_CODES:
        return EXIT_USAGE
    if code == "InvalidRequestException":
        # For rotate and check it is the secret's rotation state refusing the run (a rotation
        # still pending, say): the operation failed. Elsewhere the request itself was wrong.
        return EXIT_FAILED if command in {"rotate", "check"} else EXIT_USAGE
    return EXIT_UNAVAILABLE
