"""The one exit-code table, and the error types commands raise to stop with a message.

Every command exits with a code from this table, whatever failed:

    0    ok
    1    the rotation, check or key is bad (Cekura rejects the current key, the secret is not in
         the documented format, a rotation failed or is stuck, a record cannot be cleared
         because its key is still live, a doctor check failed)
    2    usage or input (an option, a secret or function that does not exist, the wrong region,
         a key or admin secret that cannot be used)
    3    AWS or Cekura unreachable, or the operator's own credentials refused (AccessDenied,
         expired token, a KMS key the operator may not use)
    130  interrupted (Ctrl-C)

Losing the output (a closed pipe, `| head`, a terminal gone) never changes the code: the work
was done, and the code says how it went.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = """\
exit codes (the same for every command):
  0    ok
  1    the rotation, check or key is bad
  2    usage or input error (including the wrong region or a secret that does not exist)
  3    AWS or Cekura unreachable, or your own AWS credentials refused
  130  interrupted (Ctrl-C); a rotation already started goes on in Secrets Manager
A closed stdout (| head) does not change the code."""

# AWS error codes that mean the caller named something wrong, not that AWS failed.
_USAGE_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "ResourceExistsException",
        "ValidationException",
        "InvalidParameterException",
        "InvalidParameterValueException",
        "ParamValidationError",
        "NoRegionError",
        "ProfileNotFound",
        "NotFoundException",
        "ValidationError",
    }
)
# Commands for which a refused request (InvalidRequestException) is the rotation's state refusing
# the run (a rotation still pending), not a malformed request.
_STATEFUL = frozenset({"rotate", "check"})


class CliError(Exception):
    """An error the CLI reports as one line, with the exit code it maps to."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class AwsError(Exception):
    """An AWS call other than Secrets Manager's failed (Lambda, Logs, SNS, STS, CloudFormation).

    Secrets Manager's failures are the port's SecretsStoreError; both carry the error code.
    """

    def __init__(self, message: str, *, code: str, operation: str):
        super().__init__(message)
        self.message = message
        self.code = code
        self.operation = operation


def aws_exit_code(code: str, command: str) -> int:
    """The exit code for a failed AWS call."""
    if code in _USAGE_CODES:
        return EXIT_USAGE
    if code == "InvalidRequestException":
        return EXIT_FAILED if command in _STATEFUL else EXIT_USAGE
    # AccessDenied, expired or unknown credentials, KMS refusals, throttling, 5xx, no network.
    return EXIT_UNAVAILABLE
