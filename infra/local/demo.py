"""`make demo`: rotations through RotateSecret on local stand-ins.

Three rotations in each Cekura world (`spec`, `permissive`), then admin mode: in the world where
API keys may not create keys at all (`nocreate`), one rotation minted and revoked with an admin
secret's credential (a dashboard session), and the recovery of a key deleted in the dashboard.

moto server and the fake Cekura run on 127.0.0.1; the real handler runs in this process, invoked
by moto's RotateSecret. The handler's JSON logs and metrics are captured and summarised rather
than printed; keys and the admin credential are shown only as fingerprints.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from typing import Any, Literal

from cekura_rotator.secret_value import fingerprint
from infra.local.lambda_bridge import FUNCTION_ARN
from infra.local.stack import (
    LocalStack,
    delete_in_dashboard,
    enable_rotation,
    local_stack,
    secret_json,
)

ROTATIONS = 3


def main() -> int:
    """Run the demo in both permission worlds; exit non-zero if any rotation failed."""
    failures = 0
    for mode in ("spec", "permissive"):
        failures += run_world(mode)
    failures += run_admin_mode()
    print("\nAll rotations succeeded." if failures == 0 else f"\n{failures} rotation(s) FAILED.")
    return 1 if failures else 0


def run_world(mode: Literal["spec", "permissive"]) -> int:
    """Rotate one secret three times with Cekura in `mode`; return the number of failures."""
    title = {
        "spec": "current spec: API keys may create keys, not list or delete them",
        "permissive": "older spec: API keys may also list and delete keys",
    }[mode]
    print(f"\n=== Cekura in '{mode}' mode ({title}); revocation policy: grace ===")
    failures = 0
    with local_stack(mode=mode) as stack:
        sm = stack.client()
        project = stack.fake.create_project(name="Voice agent QA", organization="Acme")
        boot = stack.fake.issue_key(project_id=project, name="bootstrap (dashboard)")
        arn = sm.create_secret(
            Name=f"demo/cekura-{mode}",
            SecretString=secret_json(boot.key, project, key_id=boot.id, team="voice-qa"),
        )["ARN"]
        with _captured():
            enable_rotation(sm, arn)
        print(f"secret {arn}")
        print(f"bootstrap key id {boot.id} ({fingerprint(boot.key)}); rotation enabled, checked")
        for n in range(1, ROTATIONS + 1):
            failures += _rotate(stack, arn, project=project, title=f"rotation {n}")
    return failures


def run_admin_mode() -> int:
    """Admin mode where API keys may not create keys: a rotation minted and revoked with the
    admin secret's dashboard session, then a key deleted in the dashboard and recovered."""
    print(
        "\n=== Admin mode: Cekura in 'nocreate' mode (API keys may not create keys); "
        "revocation policy: grace ==="
    )
    with local_stack(mode="nocreate") as stack:
        sm = stack.client()
        project = stack.fake.create_project(name="Voice agent QA", organization="Acme")
        boot = stack.fake.issue_key(project_id=project, name="bootstrap (dashboard)")
        admin = stack.create_admin_secret("bearer_token", project_id=project)
        arn = sm.create_secret(
            Name="demo/cekura-admin",
            SecretString=secret_json(boot.key, project, key_id=boot.id, team="voice-qa"),
        )["ARN"]
        # As the template deploys AdminSecretArns=<admin secret ARN>.
        with stack.function_env(admin.env()):
            with _captured():
                enable_rotation(sm, arn)
            print(f"secret {arn}")
            print(f"admin secret {admin.arn}")
            print(
                f"  holds a dashboard session (bearer {fingerprint(admin.credential)}); "
                "the function's AdminSecretArns names it"
            )
            failures = _rotate(
                stack, arn, project=project, title="rotation 1, minted with the admin credential"
            )
            dead = _current(sm, arn)
            delete_in_dashboard(stack.fake, dead["key_id"], project_id=project)
            verdict = "accepts" if stack.fake.is_live(dead["api_key"]) else "rejects"
            print(
                f"\n-- key {dead['key_id']} deleted in the dashboard (say, after a leak): "
                f"Cekura {verdict} the current key"
            )
            failures += _rotate(
                stack, arn, project=project, title="rotation 2, recovering the dead key"
            )
            if not failures and stack.fake.is_live(_current(sm, arn)["api_key"]):
                print("   recovered: AWSCURRENT holds a live key again")
    return failures


def _rotate(stack: LocalStack, arn: str, *, project: int, title: str) -> int:
    """One RotateSecret, reported; 1 if a step failed."""
    started = time.perf_counter()
    with _captured() as out:
        stack.client().rotate_secret(SecretId=arn, RotationLambdaARN=FUNCTION_ARN)
    took = time.perf_counter() - started
    return _report(stack, arn, project=project, title=title, took=took, logs=out.getvalue())


def _current(sm: Any, arn: str) -> dict[str, Any]:
    return _value(sm, arn, _version_with(sm, arn, "AWSCURRENT"))


def _version_with(sm: Any, arn: str, stage: str) -> str:
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    return str(next(version for version, labels in stages.items() if stage in labels))


def _report(
    stack: LocalStack, arn: str, *, project: int, title: str, took: float, logs: str
) -> int:
    sm = stack.client()
    records = [json.loads(line) for line in logs.splitlines() if line.startswith('{"level"')]
    latest = stack.bridge.invocations[-4:]
    failed = [i for i in latest if i.error]
    print(f"\n-- {title}: {'FAILED' if failed else 'ok'} in {took * 1000:.0f} ms")
    for i in failed:
        print(f"   failed step {i.step}: {i.error}")
    stages = sm.describe_secret(SecretId=arn)["VersionIdsToStages"]
    print("   versions:")
    for version, labels in stages.items():
        if not labels:
            continue
        value = _value(sm, arn, version)
        key = value.get("api_key")
        print(
            f"     {version}  {','.join(labels):<12} key id {value.get('key_id', '-'):<3} "
            f"{fingerprint(key)}  {'live' if key and stack.fake.is_live(key) else 'revoked'}"
        )
    live = stack.fake.live_keys(project)
    print(f"   keys live at Cekura: {', '.join(f'{k.id} ({k.name})' for k in live)}")
    deleted = [r for r in records if r.get("message") == "Deleted key"]
    refused = [r for r in records if "delete this key in the dashboard" in r.get("message", "")]
    if deleted:
        print(f"   revoked by the rotator: key {', '.join(str(r['key_id']) for r in deleted)}")
    if refused:
        ids = ", ".join(str(r["key_id"]) for r in refused)
        print(f"   left for manual revocation (Cekura refused API-key deletion): key {ids}")
    if not deleted and not refused:
        print("   nothing to revoke yet (grace keeps the superseded key for one period)")
    return 1 if failed else 0


def _value(sm: Any, arn: str, version: str) -> dict[str, Any]:
    raw = sm.get_secret_value(SecretId=arn, VersionId=version)["SecretString"]
    parsed = json.loads(raw)
    return parsed if isinstance(parsed, dict) else {"api_key": raw}


@contextlib.contextmanager
def _captured() -> Any:
    """Capture the handler's log lines and EMF metrics (both go to stdout in Lambda)."""
    from cekura_rotator.observability import logger

    buffer = io.StringIO()
    handler = logger.registered_handler
    stream = getattr(handler, "stream", None)
    if hasattr(handler, "setStream"):
        handler.setStream(buffer)
    try:
        with contextlib.redirect_stdout(buffer):
            yield buffer
    finally:
        if hasattr(handler, "setStream") and stream is not None:
            handler.setStream(stream)


if __name__ == "__main__":
    raise SystemExit(main())
