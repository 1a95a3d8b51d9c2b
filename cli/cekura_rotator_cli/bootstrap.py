"""`bootstrap`: store the first key of a secret and attach rotation to it.

The key comes from one of two places, and never from an argument (which would land in shell
history and process listings):
- piped on stdin or in $CEKURA_API_KEY: a key made in the Cekura dashboard, validated first;
- `--admin-secret-arn`: minted here with the admin credential, so no person handles a key. The
  secret then names that admin secret (`admin_secret_arn`), and the new key's id is recorded, so
  the rotator can revoke it later.
Nothing is created at AWS before the key is known to work. A key minted here that cannot be
stored is deleted again (or named for manual deletion).
"""

from __future__ import annotations

import argparse
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TextIO

from cekura_rotator import key_names
from cekura_rotator.cekura import CekuraClient, Credential
from cekura_rotator.config import Config
from cekura_rotator.credentials import AdminCredential, load_admin_credential
from cekura_rotator.errors import (
    CekuraAuthError,
    CekuraError,
    CekuraForbiddenError,
    CekuraNotFoundError,
    CekuraRefusedError,
    CekuraRequestError,
    ConfigError,
    OrphanKeyError,
    SecretsStoreError,
)
from cekura_rotator.secret_value import MintedKey, SecretValue
from cekura_rotator.secrets_store import CURRENT, SecretDescription, SecretsStore
from cekura_rotator_cli import admin as admin_secrets
from cekura_rotator_cli.aws import ROTATOR_HANDLER
from cekura_rotator_cli.context import Run
from cekura_rotator_cli.errors import (
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    AwsError,
    CliError,
    aws_exit_code,
)
from cekura_rotator_cli.options import add_cekura_url, positive_int
from cekura_rotator_cli.reading import (
    cekura_url,
    explicit_cekura_url,
    function_config,
    read_version,
    schedule_text,
)

_RATE = re.compile(r"rate\(\s*(\d+)\s+(day|days|hour|hours)\s*\)", re.IGNORECASE)
_CRON = re.compile(r"cron\(.+\)", re.IGNORECASE)
_WINDOW = re.compile(r"\d{1,2}h")
FUNCTION_ARN = re.compile(r"arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}")
# A key minted a moment ago may take a moment to work everywhere (testSecret waits as long).
_ACTIVATION_WAIT = 30.0
_NOTHING = "nothing was created"


@dataclass
class _NewKey:
    """The key to store, and how to undo minting it if storing fails."""

    value: SecretValue
    undo: Callable[[], str] | None = None


NAME = "bootstrap"
HELP = "create the secret from a first key and attach rotation"
DESCRIPTION = (
    "Create the secret from a first key and attach rotation. The key is read from stdin when it "
    "is not a terminal, else from CEKURA_API_KEY (there is no option for it), or minted with "
    "--admin-secret-arn. Everything is checked before anything is created: the function is the "
    "Cekura rotator, in this region, and allows the admin secret; the key works at Cekura."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--secret-name", required=True)
    parser.add_argument("--project-id", required=True, type=positive_int)
    parser.add_argument("--function-arn", required=True, help="the rotation function's ARN")
    parser.add_argument(
        "--admin-secret-arn",
        help="mint the first key with this admin secret's credential instead of reading one; "
        "the secret then names it (admin_secret_arn)",
    )
    parser.add_argument(
        "--schedule",
        default="rate(30 days)",
        help="rate(N days), rate(N hours) or cron(...) (default rate(30 days))",
    )
    parser.add_argument("--window", help="rotation window duration, e.g. 4h")
    parser.add_argument("--kms-key-id", help="customer KMS key for a new secret")
    parser.add_argument("--description", help="description of a new secret")
    parser.add_argument(
        "--key-id",
        type=positive_int,
        help="the given key's id on the Cekura dashboard; without it the rotator can never "
        "revoke that key by id",
    )
    parser.add_argument(
        "--key-name", help="the given key's dashboard name, or the name of the key to mint"
    )
    parser.add_argument(
        "--no-validate", action="store_true", help="skip validating the key at Cekura first"
    )
    parser.add_argument(
        "--update",
        action="store_true",
        help="if the secret exists, store the key as its new AWSCURRENT version",
    )
    add_cekura_url(parser)


def run(args: argparse.Namespace, run: Run) -> int:
    explicit_cekura_url(args, run.env)  # a bad URL fails before anything runs
    key = None if args.admin_secret_arn else read_key(run.stdin, run.env)
    if args.admin_secret_arn and _given_key(run.stdin, run.env):
        raise CliError(
            "a key was given (stdin or CEKURA_API_KEY) as well as --admin-secret-arn; give one",
            EXIT_USAGE,
        )
    if args.admin_secret_arn and args.key_id:
        raise CliError(
            "--key-id names a key made in the dashboard; with --admin-secret-arn the key is "
            "minted here and its id recorded",
            EXIT_USAGE,
        )
    run.console.watch(key)
    if not FUNCTION_ARN.fullmatch(args.function_arn):
        raise CliError(
            "--function-arn must be a Lambda function ARN "
            "(arn:aws:lambda:REGION:ACCOUNT:function:NAME)",
            EXIT_USAGE,
        )
    rules = rotation_rules(args.schedule, args.window)
    run.aws.check_region(args.function_arn, "the function")
    if args.admin_secret_arn:
        run.aws.check_region(args.admin_secret_arn, "the admin secret")
    store = run.aws.store()
    existing = _existing(store, args.secret_name)
    if existing is not None and not args.update:
        raise CliError(
            f"the secret already exists ({existing.arn}); nothing was changed. Pass --update "
            "to store a key as its new AWSCURRENT version",
            EXIT_USAGE,
        )
    if existing is not None and args.kms_key_id:
        raise CliError("--kms-key-id applies only when the secret is created", EXIT_USAGE)
    function_env = _checked_function(run, args.function_arn)
    if args.admin_secret_arn:
        _check_admin_allowed(run, args.admin_secret_arn, function_env)
    url = cekura_url(args, run.env, function_env)
    if key:
        new = _given(key, args, run, url)
    else:
        new = _mint(args, run, store, url, _key_name_prefix(function_env))

    test_token = str(uuid.uuid4())  # chosen here for the reason given in rotate.start
    with run.changes():
        arn, version = _store(new, existing, args, run, store)
        try:
            store.start_rotation(
                arn,
                token=test_token,
                function_arn=args.function_arn,
                rules=rules,
                immediately=False,
            )
        except SecretsStoreError as e:
            raise CliError(
                f"the key is stored in {arn}, but attaching rotation failed: {e.message}; fix "
                "that and run `" + run.command(*_rerun(args, arn)) + "` (with the key again)",
                aws_exit_code(e.code, "bootstrap"),
            ) from None
        run.changed.append(f"attached rotation to {arn}")
    if new.value.key_id is None:
        run.console.warn(
            "no --key-id: the key's id at Cekura is not recorded, so the rotator can never "
            "revoke this key by id once it is replaced; it will have to be deleted in the "
            "dashboard. Record it now with the id the dashboard shows: "
            + run.command(*_rerun(args, arn), "--key-id", "N")
            + " (key on stdin)"
        )
    run.console.info(
        f"Attached rotation: function {args.function_arn}, schedule {schedule_text(rules)}. "
        f"Secrets Manager is testing it (testSecret, version {test_token})."
    )
    run.console.info(
        "Next: "
        + run.command("status", "--secret-id", arn)
        + "  (to rotate now: "
        + run.command("rotate", "--secret-id", arn, "--wait")
        + ")"
    )
    value = new.value
    run.console.result(
        {
            "secret_arn": arn,
            "version_id": version,
            "created": existing is None,
            "key": {
                "key_id": value.key_id,
                "key_name": value.key_name,
                "fingerprint": value.fingerprint,
                "project_id": value.project_id,
                "admin_secret_arn": value.admin_secret_arn,
            },
            "rotation": {
                "function_arn": args.function_arn,
                "schedule": schedule_text(rules),
                "test_version": test_token,
            },
        },
        [],
    )
    return EXIT_OK


def _rerun(args: argparse.Namespace, arn: str) -> list[str]:
    words = [
        "bootstrap", "--update", "--secret-name", args.secret_name,
        "--project-id", str(args.project_id), "--function-arn", args.function_arn,
    ]  # fmt: skip
    if args.admin_secret_arn:
        words += ["--admin-secret-arn", args.admin_secret_arn]
    return words


def _checked_function(run: Run, function_arn: str) -> Mapping[str, str] | None:
    """The function's environment, after checking that it exists and is the Cekura rotator;
    None (with a warning) when the operator may not read its configuration."""
    try:
        function = run.aws.function(function_arn)
    except AwsError as e:
        if e.code in ("ResourceNotFoundException", "NotFoundException"):
            raise CliError(
                f"there is no function {function_arn} (looked in {run.aws.where()}); {_NOTHING}. "
                "Check --function-arn: the stack's output RotatorFunctionArn",
                EXIT_USAGE,
            ) from None
        run.console.warn(
            f"could not check that {function_arn} is the Cekura rotator ({e.message}); going on. "
            "Grant yourself lambda:GetFunctionConfiguration to have it checked"
        )
        return None
    if not function.is_rotator:
        raise CliError(
            f"{function_arn} is not the Cekura rotator: its handler is {function.handler}, not "
            f"{ROTATOR_HANDLER}; {_NOTHING}. Check --function-arn: the stack's output "
            "RotatorFunctionArn",
            EXIT_USAGE,
        )
    try:
        Config.from_env(function.environment)
    except ConfigError as e:
        raise CliError(
            f"the configuration of {function_arn} does not parse ({e.message}), so it could not "
            f"rotate this secret; {_NOTHING}. Fix the stack's parameters and deploy again",
            EXIT_USAGE,
        ) from None
    return function.environment


def _check_admin_allowed(run: Run, arn: str, function_env: Mapping[str, str] | None) -> None:
    allowed = admin_secrets.allowed_by_function(arn, function_env)
    if allowed is False:
        raise CliError(
            f"the function does not allow admin secret {arn} (the stack's AdminSecretArns do not "
            f"include it), so every rotation of this secret would fail; {_NOTHING}. Deploy the "
            "stack with it in AdminSecretArns first",
            EXIT_USAGE,
        )
    if allowed is None:
        run.console.warn(
            f"could not check that the function allows admin secret {arn} (its configuration "
            "cannot be read); rotations fail unless the stack's AdminSecretArns include it"
        )


# -- where the key comes from ------------------------------------------------------------------


def read_key(stdin: TextIO | None, env: Mapping[str, str]) -> str:
    """The first key: piped on stdin or in CEKURA_API_KEY, never an argument."""
    key = _given_key(stdin, env)
    if not key:
        raise CliError(
            "no key given: pipe it on stdin or set CEKURA_API_KEY (it is never taken from an "
            "argument), or mint one with --admin-secret-arn",
            EXIT_USAGE,
        )
    return key


def _given_key(stdin: TextIO | None, env: Mapping[str, str]) -> str | None:
    piped: str | None = None
    if stdin is not None and not _is_tty(stdin):
        lines = [line.strip() for line in stdin.read().splitlines() if line.strip()]
        if len(lines) > 1:
            raise CliError("stdin holds more than one line; pipe only the key", EXIT_USAGE)
        piped = lines[0] if lines else None
    from_env = env.get("CEKURA_API_KEY", "").strip() or None
    if piped and from_env and piped != from_env:
        raise CliError(
            "two different keys were given (stdin and CEKURA_API_KEY); give only one", EXIT_USAGE
        )
    return piped or from_env


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _given(key: str, args: argparse.Namespace, run: Run, url: str) -> _NewKey:
    value = SecretValue(
        api_key=key, project_id=args.project_id, key_id=args.key_id, key_name=args.key_name
    )
    # The port's parser holds the key rules (visible ASCII, length): render, then parse back.
    SecretValue.parse(value.render(), default_project_id=None)
    if args.no_validate:
        run.console.info("Key not validated at Cekura (--no-validate).")
        return _NewKey(value)
    cekura = run.cekura(url)
    try:
        cekura.validate(key, project_id=args.project_id)
    except CekuraAuthError as e:
        raise CliError(
            f"Cekura does not accept the key: {e.message}; {_NOTHING}", EXIT_USAGE
        ) from None
    except CekuraForbiddenError as e:
        raise CliError(
            f"the key does not belong to project {args.project_id}: {e.message}; {_NOTHING}",
            EXIT_USAGE,
        ) from None
    except (CekuraRefusedError, CekuraRequestError, CekuraNotFoundError) as e:
        raise CliError(f"Cekura refused the key: {e.message}; {_NOTHING}", EXIT_USAGE) from None
    except CekuraError as e:
        raise CliError(
            f"could not validate the key at Cekura: {e.message}; {_NOTHING} "
            "(--no-validate skips this check)",
            EXIT_UNAVAILABLE,
        ) from None
    finally:
        cekura.close()
    run.console.info(f"Cekura accepts the key ({value.fingerprint}) for project {args.project_id}.")
    return _NewKey(value)


def _key_name_prefix(function_env: Mapping[str, str] | None) -> str:
    """The function's CEKURA_KEY_NAME_PREFIX (its default when the configuration is unknown)."""
    return (function_config(function_env) or Config()).key_name_prefix


def _mint(
    args: argparse.Namespace, run: Run, store: SecretsStore, url: str, prefix: str
) -> _NewKey:
    arn: str = args.admin_secret_arn
    project: int = args.project_id
    admin = load_admin_credential(store, arn)
    run.console.watch(admin.credential.value)
    if not admin.may_mint_for(project):
        raise CliError(
            f"admin secret {arn} may not mint keys for project {project} (its 'projects': "
            f"{sorted(admin.projects or ())}); {_NOTHING}",
            EXIT_USAGE,
        )
    name = args.key_name or default_key_name(args.secret_name, prefix)
    cekura = run.cekura(url)
    try:
        minted = _create(cekura, admin, name=name, project=project)
        run.console.watch(minted.key)

        def undo() -> str:
            return _delete(run, url, admin, minted)

        run.console.info(
            f"Minted key {minted.id} {minted.name!r} for project {project} with admin secret "
            f"{arn} ({admin.credential.kind} {admin.credential.fingerprint})."
        )
        if not args.no_validate:
            try:
                cekura.validate(
                    Credential.api_key(minted.key),
                    project_id=project,
                    activation_wait=_ACTIVATION_WAIT,
                )
            except CekuraError as e:
                raise CliError(
                    f"the key minted with admin secret {arn} does not work for project {project}: "
                    f"{e.message}; {undo()}; nothing was stored",
                    EXIT_USAGE,
                ) from None
            run.console.info(f"Cekura accepts the new key ({_fingerprint(minted)}).")
    finally:
        cekura.close()
    value = SecretValue(
        api_key=minted.key,
        project_id=project,
        key_id=minted.id,
        key_name=minted.name,
        created_at=minted.created_at,
        admin_secret_arn=arn,
    )
    return _NewKey(value, undo)


def _create(cekura: CekuraClient, admin: AdminCredential, *, name: str, project: int) -> MintedKey:
    which = f"admin secret {admin.arn}"
    try:
        return cekura.create_key(admin.credential, name=name, project=project)
    except CekuraAuthError as e:
        raise CliError(
            f"Cekura rejects the credential of {which}: {e.message}; {_NOTHING}", EXIT_USAGE
        ) from None
    except CekuraRefusedError as e:
        hint = (
            " (where Cekura lets only dashboard sessions create keys, the admin secret needs a "
            "bearer_token)"
            if admin.credential.kind == "api_key"
            else ""
        )
        raise CliError(
            f"Cekura does not let the credential of {which} create keys for project {project}: "
            f"{e.message}{hint}; {_NOTHING}",
            EXIT_USAGE,
        ) from None
    except OrphanKeyError as e:
        raise CliError(
            f"Cekura created key {e.key_id} but did not show it: {e.message}; delete key "
            f"{e.key_id} in the Cekura dashboard; nothing was stored",
            EXIT_UNAVAILABLE,
        ) from None
    except CekuraError as e:
        raise CliError(
            f"could not mint a key with {which}: {e.message}; {_NOTHING}", EXIT_UNAVAILABLE
        ) from None


def _delete(run: Run, url: str, admin: AdminCredential, minted: MintedKey) -> str:
    """Delete a key minted here that will not be stored; say what became of it."""
    cekura = run.cekura(url)
    try:
        cekura.delete_key(admin.credential, minted.id)
    except CekuraError as e:
        return (
            f"the new key {minted.id} {minted.name!r} could not be deleted ({e.message}): "
            "delete it in the Cekura dashboard"
        )
    finally:
        cekura.close()
    return f"the new key {minted.id} was deleted again"


def _fingerprint(minted: MintedKey) -> str:
    return Credential.api_key(minted.key).fingerprint


def default_key_name(secret_name: str, prefix: str) -> str:
    """`<prefix>-<secret name>-bootstrap`: the start of the names the rotator gives the keys it
    mints for the secret (`key_names.key_stem`, without the ARN's hash, unknown before the
    secret exists), then `bootstrap`."""
    stem = key_names.key_stem(prefix, secret_name, secret_name)
    return stem[: -(key_names.ARN_TAG_CHARS + 1)] + "bootstrap"


# -- storing -----------------------------------------------------------------------------------


def _store(
    new: _NewKey,
    existing: SecretDescription | None,
    args: argparse.Namespace,
    run: Run,
    store: SecretsStore,
) -> tuple[str, str]:
    """Create the secret or put the key as its AWSCURRENT version; return (ARN, version)."""
    try:
        if existing is None:
            arn, version = store.create_secret(
                args.secret_name,
                value=new.value.render(),
                token=str(uuid.uuid4()),
                description=args.description
                or f"Cekura API key for project {args.project_id}, rotated by {args.function_arn}",
                kms_key_id=args.kms_key_id,
            )
            run.changed.append(f"created secret {arn}")
            run.console.info(f"Created secret {args.secret_name} ({arn}), version {version}.")
            return arn, version
        value = _updated_value(store, existing, new.value, run)
        version = store.put_current(existing.arn, value=value.render(), token=str(uuid.uuid4()))
    except SecretsStoreError as e:
        if new.undo is None:
            raise
        if e.rejected:
            fate = new.undo()
        else:
            # The call may have stored the value although it reported a failure: deleting the
            # key could leave the secret holding a dead one.
            fate = (
                "the value may have been stored all the same: check with `"
                + run.command("status", "--secret-id", args.secret_name)
                + f"`; if it was not, delete key {new.value.key_id} in the Cekura dashboard"
            )
        raise CliError(f"{e.message}; {fate}", aws_exit_code(e.code, "bootstrap")) from None
    run.changed.append(f"stored the key as version {version} of {existing.arn}")
    run.console.info(f"Stored the key as version {version} (AWSCURRENT) of {existing.arn}.")
    return existing.arn, version


def _existing(store: SecretsStore, name: str) -> SecretDescription | None:
    try:
        details = store.describe_details(name)
    except SecretsStoreError as e:
        if e.code == "ResourceNotFoundException":
            return None
        raise
    if details.deleted_date is not None:
        raise CliError(
            f"the secret {details.secret.arn} is scheduled for deletion, so nothing can be "
            f"stored in it; {_NOTHING}. Restore it first (aws secretsmanager restore-secret)",
            EXIT_USAGE,
        )
    return details.secret


def _updated_value(
    store: SecretsStore, existing: SecretDescription, fresh: SecretValue, run: Run
) -> SecretValue:
    """The new key in the documented JSON format, keeping the old value's other fields."""
    current = read_version(
        store, existing.arn, existing.version_with(CURRENT) or "", run.console
    ).value
    if current is None or current.plain:
        return fresh
    return replace(
        fresh,
        extra=dict(current.extra),
        admin_secret_arn=fresh.admin_secret_arn or current.admin_secret_arn,
    )


def rotation_rules(schedule: str, window: str | None) -> dict[str, Any]:
    """RotationRules from `--schedule` and `--window`, or a usage error."""
    text = schedule.strip()
    rate = _RATE.fullmatch(text)
    rules: dict[str, Any]
    if rate and rate.group(2).lower().startswith("day"):
        days = int(rate.group(1))
        if not 1 <= days <= 1000:
            raise CliError("--schedule rate(N days) needs N from 1 to 1000", EXIT_USAGE)
        # AutomaticallyAfterDays means the same as rate(N days) on AWS, and moto enables
        # rotation only for it.
        rules = {"AutomaticallyAfterDays": days}
    elif rate or _CRON.fullmatch(text):
        rules = {"ScheduleExpression": text}
    else:
        raise CliError(
            f"--schedule must be rate(N days), rate(N hours) or cron(...), not {text!r}",
            EXIT_USAGE,
        )
    if window is not None:
        if not _WINDOW.fullmatch(window.strip()):
            raise CliError(f"--window must be hours such as 4h, not {window!r}", EXIT_USAGE)
        rules["Duration"] = window.strip()
    return rules
