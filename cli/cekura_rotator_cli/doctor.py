"""`doctor`: a preflight. One line per check, each ok, warn or fail, with the fix.

- function: it exists, in this region, and is the Cekura rotator (its handler; its runtime,
  version and code hash are shown);
- configuration: the function's environment parses as the rotator parses it (`Config.from_env`);
- log group: the operator may read the function's log (`rotate --wait` and `rotate --cancel` use
  it);
- secret: AWSCURRENT is in the documented format and names a project; its rotation function is
  this one, enabled, and no rotation is pending;
- Cekura: reachable, and it accepts the current key;
- admin secret: readable by the operator, allowed by the function, and Cekura accepts it;
- alert topic: it has a confirmed subscription (`--alert-topic-arn`, else the topic of the
  function's CloudFormation stack: its `AlertTopic`).

Exit code: 1 when a check failed; else 3 when one could not be made (AWS or Cekura unreachable,
the operator's own credentials refused); else 0. Warnings never fail it.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from cekura_rotator.config import Config
from cekura_rotator.credentials import load_admin_credential
from cekura_rotator.errors import AdminSecretError, ConfigError, SecretsStoreError
from cekura_rotator.health.rules import pending_version, rotated_by, unqualified
from cekura_rotator.secrets_store import SecretDetails
from cekura_rotator_cli import admin
from cekura_rotator_cli.aws import FunctionInfo, arn_region, request
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    AwsError,
    CliError,
    aws_exit_code,
)
from cekura_rotator_cli.keys import judge_key
from cekura_rotator_cli.options import add_cekura_url, add_secret_id
from cekura_rotator_cli.reading import (
    Read,
    cekura_url,
    current_value,
    explicit_cekura_url,
    key_label,
    schedule_text,
    time_text,
)

NAME = "doctor"
HELP = (
    "preflight: the function, its configuration and log, the secret, Cekura, the admin secret "
    "and the alert topic, one line each (ok, warn or fail) with the fix"
)
Level = Literal["ok", "warn", "fail"]
_NOT_FOUND = ("ResourceNotFoundException", "NotFoundException", "ResourceNotFound")
_STACK_TAG = "aws:cloudformation:stack-name"
_TOPIC_LOGICAL_ID = "AlertTopic"
_UNCONFIRMED = frozenset({"PendingConfirmation", "Deleted"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_secret_id(parser, required=False)
    parser.add_argument(
        "--function-arn", help="the rotation function (default: the secret's rotation function)"
    )
    parser.add_argument(
        "--alert-topic-arn",
        help="the alert topic (default: the AlertTopic of the function's CloudFormation stack)",
    )
    add_cekura_url(parser)


@dataclass(frozen=True)
class Check:
    """One line of the report. `unreachable`: a fail that says the check could not be made."""

    name: str
    level: Level
    text: str
    fix: str | None = None
    unreachable: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "status": self.level,
            "text": self.text,
            "fix": self.fix,
            "unreachable": self.unreachable,
        }


def run(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything is read
    if not args.secret_id and not args.function_arn:
        raise CliError("name a secret (--secret-id) or a function (--function-arn)", EXIT_USAGE)
    for arn, what in ((args.secret_id, "the secret"), (args.function_arn, "the function")):
        if arn:
            run.aws.check_region(arn, what)
    doctor = _Doctor(args, run)
    checks = list(doctor.checks())
    run.console.result(
        {
            "checks": [c.document() for c in checks],
            **{
                level: sum(1 for c in checks if c.level == level)
                for level in ("ok", "warn", "fail")
            },
        },
        _lines(checks),
    )
    failed = [c for c in checks if c.level == "fail"]
    if not failed:
        return EXIT_OK
    code = EXIT_FAILED if any(not c.unreachable for c in failed) else EXIT_UNAVAILABLE
    raise CliError(
        f"{len(failed)} check(s) failed ({', '.join(c.name for c in failed)}); each line above "
        "gives the fix",
        code,
    )


def _lines(checks: Sequence[Check]) -> Iterator[str]:
    width = max(len(c.name) for c in checks)
    for check in checks:
        yield f"{check.level:<5} {check.name:<{width}}  {check.text}"
        if check.fix:
            yield f"{'':<5} {'':<{width}}  fix: {check.fix}"


class _Doctor:
    def __init__(self, args: argparse.Namespace, run: Run):
        self.args = args
        self.run = run
        self.store = run.aws.store()
        self.details: SecretDetails | None = None
        self.current: Read | None = None
        self.function: FunctionInfo | None = None
        self.config: Config | None = None

    def checks(self) -> Iterator[Check]:
        if self.args.secret_id:
            yield from self._secret_exists()
        function_arn = self.args.function_arn or (
            self.details.secret.rotation_lambda_arn if self.details else None
        )
        if function_arn:
            yield self._function(function_arn)
            if self.function is not None:
                yield self._configuration()
                yield self._log_group()
        elif self.details is not None:
            yield Check(
                "function",
                "fail",
                f"secret {self.details.secret.name} has no rotation function",
                "attach one: "
                + self.run.command(
                    "bootstrap", "--update", "--secret-name", self.details.secret.name,
                    "--project-id", "N", "--function-arn", "ARN",
                ),
            )  # fmt: skip
        if self.details is not None:
            yield self._format()
            yield self._rotation(function_arn)
            yield self._cekura()
        yield from self._admin()
        yield self._alert_topic()

    # -- the secret ----------------------------------------------------------------------------

    def _secret_exists(self) -> Iterator[Check]:
        try:
            self.details = self.store.describe_details(self.args.secret_id)
        except SecretsStoreError as e:
            yield self._aws_failure("secret", e.code, e.message, "check --secret-id")
            return
        secret = self.details.secret
        if self.details.deleted_date is not None:
            yield Check(
                "secret",
                "fail",
                f"{secret.arn} is scheduled for deletion on {time_text(self.details.deleted_date)}",
                "restore it: aws secretsmanager restore-secret --secret-id " + secret.arn,
            )
        self.current = current_value(self.store, secret, self.run.console)

    def _format(self) -> Check:
        assert self.current is not None
        read = self.current
        if read.value is None:
            if read.kind == "unreadable":
                return Check(
                    "secret format",
                    "fail",
                    f"the AWSCURRENT version {read.problem}",
                    "grant yourself secretsmanager:GetSecretValue on the secret (and kms:Decrypt "
                    "on its key) to have it checked",
                    unreachable=True,
                )
            return Check(
                "secret format",
                "fail",
                f"the AWSCURRENT version {read.problem}",
                "store a key in the documented format: " + self._bootstrap_update(),
            )
        value = read.value
        project = self._project()
        if project is None:
            return Check(
                "secret format",
                "fail",
                f"AWSCURRENT holds {key_label(value)} but no project: neither the secret "
                "(project_id) nor the function (CEKURA_PROJECT_ID) names one",
                "add project_id to the secret: " + self._bootstrap_update(),
            )
        return Check(
            "secret format",
            "ok",
            f"AWSCURRENT holds {key_label(value)} for project {project}"
            + ("" if value.key_id is not None else " (no key_id: it cannot be revoked by id)"),
        )

    def _rotation(self, function_arn: str | None) -> Check:
        assert self.details is not None
        secret = self.details.secret
        attach = (
            "attach it: aws secretsmanager rotate-secret --secret-id "
            f"{secret.arn} --rotation-lambda-arn {function_arn or 'FUNCTION_ARN'} "
            '--rotation-rules \'{"ScheduleExpression": "rate(30 days)"}\' --no-rotate-immediately'
        )
        if not secret.rotation_lambda_arn:
            return Check("rotation", "fail", "the secret has no rotation function", attach)
        if function_arn and not rotated_by(secret, function_arn):
            return Check(
                "rotation",
                "fail",
                f"the secret is rotated by {secret.rotation_lambda_arn}, not by {function_arn}",
                attach,
            )
        if not secret.rotation_enabled:
            return Check("rotation", "fail", "rotation is not enabled on the secret", attach)
        pending = pending_version(secret.versions)
        schedule = schedule_text(self.details.rotation_rules)
        if pending is not None:
            return Check(
                "rotation",
                "warn",
                f"rotated by this function ({schedule}), but a rotation is pending (version "
                f"{pending}): in progress, failed or stuck",
                "follow it: "
                + self.run.command("status", "--secret-id", secret.arn)
                + "; if it is stuck: "
                + self.run.cancel_command(secret.arn),
            )
        return Check(
            "rotation",
            "ok",
            f"rotated by this function, enabled, {schedule}, "
            f"next {time_text(secret.next_rotation)}",
        )

    def _cekura(self) -> Check:
        assert self.details is not None
        assert self.current is not None
        value = self.current.value
        url = self._cekura_url()
        if value is None:
            return Check(
                "cekura", "warn", f"not asked about the current key ({url}): no usable key"
            )
        cekura = self.run.cekura(url)
        try:
            verdict = judge_key(cekura, value, self._project())
        finally:
            cekura.close()
        secret = self.details.secret
        if verdict.state == "accepted":
            return Check("cekura", "ok", f"{url} accepts the current key ({verdict.text})")
        if verdict.state == "rejected":
            return Check(
                "cekura",
                "fail",
                f"{url}: the current key is {verdict.text}",
                "rotate with an admin credential (AdminSecretArns), or store a key from the "
                "dashboard: " + self._bootstrap_update(),
            )
        if verdict.state == "unknown":
            return Check(
                "cekura",
                "fail",
                f"{url} cannot be asked: {verdict.text}",
                "check this machine's network and the Cekura URL (--cekura-url, CEKURA_API_URL, "
                "the function's CekuraApiUrl)",
                unreachable=True,
            )
        return Check("cekura", "warn", f"{url}: the current key of {secret.name} {verdict.text}")

    # -- the function --------------------------------------------------------------------------

    def _function(self, function_arn: str) -> Check:
        try:
            function = self.run.aws.function(function_arn)
        except AwsError as e:
            return self._aws_failure(
                "function",
                e.code,
                e.message,
                "check --function-arn (the stack's output RotatorFunctionArn)",
                denied_fix=f"grant yourself lambda:GetFunctionConfiguration on {function_arn}",
            )
        if not function.is_rotator:
            return Check(
                "function",
                "fail",
                f"{function_arn} is not the Cekura rotator (handler {function.handler})",
                "use the stack's output RotatorFunctionArn",
            )
        self.function = function
        return Check(
            "function", "ok", f"{function.arn}: the Cekura rotator ({function.describe()})"
        )

    def _configuration(self) -> Check:
        assert self.function is not None
        try:
            config = Config.from_env(self.function.environment)
        except ConfigError as e:
            return Check(
                "configuration",
                "fail",
                f"the function's environment does not parse: {e.message}",
                "fix the stack's parameter and deploy again (sam deploy)",
            )
        self.config = config
        admin_text = config.admin_secret_arn or "none"
        return Check(
            "configuration",
            "ok",
            f"parses: Cekura API {config.cekura_api_url}, revocation {config.revocation_policy}, "
            f"default project {config.default_project_id or 'none'}, admin secret {admin_text}",
        )

    def _log_group(self) -> Check:
        assert self.function is not None
        group = self.function.log_group
        logs = self.run.aws.client("logs", arn_region(self.function.arn))
        try:
            request("CloudWatch Logs", "FilterLogEvents", logs.filter_log_events,
                    logGroupName=group, limit=1)  # fmt: skip
        except (AwsError, CliError) as e:
            code = getattr(e, "code", "")
            if code in _NOT_FOUND:
                return Check(
                    "log group",
                    "warn",
                    f"{group} does not exist yet (the function has not run)",
                    "it appears with the first rotation; then run doctor again",
                )
            return Check(
                "log group",
                "warn",
                f"{group} cannot be read from here: {e.message}",
                f"grant yourself logs:FilterLogEvents on {group} (rotate --wait then gives "
                "each step's outcome, and rotate --cancel needs it)",
            )
        return Check("log group", "ok", f"{group} is readable")

    # -- the admin secret ----------------------------------------------------------------------

    def _admin(self) -> Iterator[Check]:
        value = self.current.value if self.current else None
        env = self.function.environment if self.function else None
        arn, source = admin.admin_arn(value, env)
        if arn is None:
            if source == "unknown":
                yield Check(
                    "admin secret",
                    "warn",
                    "unknown: the function's configuration cannot be read",
                )
            else:
                yield Check(
                    "admin secret", "ok", "none configured: keys are minted with the rotated key"
                )
            return
        allowed = admin.allowed_by_function(arn, env)
        if allowed is False:
            yield Check(
                "admin secret",
                "fail",
                f"{arn} is named by the secret, but the function does not allow it",
                "deploy the stack with it in AdminSecretArns",
            )
        try:
            credential = load_admin_credential(self.store, arn)
        except AdminSecretError as e:
            if isinstance(e.__cause__, SecretsStoreError):
                yield Check(
                    "admin secret",
                    "warn",
                    f"{arn} cannot be read from here ({e.message}); the function reads it with "
                    "its own role",
                    f"grant yourself secretsmanager:GetSecretValue on {arn} to have it checked",
                )
            else:
                yield Check("admin secret", "fail", e.message, "fix the admin secret's value")
            return
        self.run.console.watch(credential.credential.value)
        if allowed is not False:
            yield Check(
                "admin secret",
                "ok" if allowed else "warn",
                f"{arn} ({admin.SOURCES[source]}) is readable"
                + (", allowed by the function" if allowed else "; whether the function allows it "
                   "is unknown"),
            )  # fmt: skip
        project = value.project_id if value else None
        cekura = self.run.cekura(self._cekura_url())
        try:
            accepted, verdict = admin.probe(cekura, credential, project)
        finally:
            cekura.close()
        fingerprint = f"{credential.credential.kind} {credential.credential.fingerprint}"
        if accepted:
            yield Check("admin credential", "ok", f"{fingerprint}: Cekura {verdict}")
        elif accepted is False:
            yield Check(
                "admin credential",
                "fail",
                f"{fingerprint}: Cekura {verdict}",
                f"store a working credential in {arn}",
            )
        else:
            yield Check(
                "admin credential",
                "fail",
                f"{fingerprint}: Cekura {verdict}",
                "check this machine's network and the Cekura URL",
                unreachable=True,
            )

    # -- the alert topic -----------------------------------------------------------------------

    def _alert_topic(self) -> Check:
        topic = self.args.alert_topic_arn or self._stack_topic()
        if topic is None:
            return Check(
                "alert topic",
                "warn",
                "unknown: give --alert-topic-arn, or name a function deployed by the stack",
                "pass --alert-topic-arn (the stack's output AlertTopicArn)",
            )
        sns = self.run.aws.client("sns", arn_region(topic))
        subscriptions: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {"TopicArn": topic}
        try:
            while True:
                page = request("SNS", "ListSubscriptionsByTopic",
                               sns.list_subscriptions_by_topic, **kwargs)  # fmt: skip
                subscriptions += page.get("Subscriptions", [])
                if not page.get("NextToken"):
                    break
                kwargs["NextToken"] = page["NextToken"]
        except (AwsError, CliError) as e:
            return self._aws_failure(
                "alert topic",
                getattr(e, "code", ""),
                e.message,
                "check --alert-topic-arn (the stack's output AlertTopicArn)",
                denied_fix=f"grant yourself sns:ListSubscriptionsByTopic on {topic}",
            )
        confirmed = [s for s in subscriptions if s.get("SubscriptionArn") not in _UNCONFIRMED]
        subscribe = (
            f"aws sns subscribe --topic-arn {topic} --protocol email --notification-endpoint "
            "YOUR_ADDRESS, then confirm the e-mail (or deploy with AlarmEmail)"
        )
        if confirmed:
            protocols = ", ".join(sorted({str(s.get("Protocol")) for s in confirmed}))
            return Check(
                "alert topic",
                "ok",
                f"{topic}: {len(confirmed)} confirmed subscription(s) ({protocols})",
            )
        if subscriptions:
            return Check(
                "alert topic",
                "fail",
                f"{topic}: {len(subscriptions)} subscription(s), none confirmed: alerts reach "
                "nobody",
                "confirm the subscription (the link in the e-mail AWS sent), or " + subscribe,
            )
        return Check(
            "alert topic", "fail", f"{topic}: no subscription: alerts reach nobody", subscribe
        )

    def _stack_topic(self) -> str | None:
        """The AlertTopic of the CloudFormation stack that deployed the function."""
        if self.function is None:
            return None
        region = arn_region(self.function.arn)
        try:
            tags = request(
                "Lambda", "ListTags", self.run.aws.client("lambda", region).list_tags,
                Resource=unqualified(self.function.arn),
            ).get("Tags") or {}  # fmt: skip
            stack = tags.get(_STACK_TAG)
            if not stack:
                return None
            answer = request(
                "CloudFormation", "DescribeStackResource",
                self.run.aws.client("cloudformation", region).describe_stack_resource,
                StackName=stack, LogicalResourceId=_TOPIC_LOGICAL_ID,
            )  # fmt: skip
        except (AwsError, CliError):
            return None
        topic = (answer.get("StackResourceDetail") or {}).get("PhysicalResourceId")
        return str(topic) if topic else None

    # -- helpers -------------------------------------------------------------------------------

    def _aws_failure(
        self, name: str, code: str, message: str, fix: str, *, denied_fix: str | None = None
    ) -> Check:
        if code in _NOT_FOUND:
            return Check(name, "fail", f"{message} (looked in {self.run.aws.where()})", fix)
        unreachable = aws_exit_code(code, "doctor") == EXIT_UNAVAILABLE
        return Check(
            name,
            "fail",
            message,
            denied_fix if unreachable and denied_fix else fix,
            unreachable=unreachable,
        )

    def _project(self) -> int | None:
        value = self.current.value if self.current else None
        if value is not None and value.project_id is not None:
            return value.project_id
        return self.config.default_project_id if self.config else None

    def _cekura_url(self) -> str:
        env = self.function.environment if self.function else None
        return cekura_url(self.args, self.run.env, env)

    def _bootstrap_update(self) -> str:
        name = self.details.secret.name if self.details else "NAME"
        return self.run.store_key_command(name)
