"""`make demo`: rotations through RotateSecret on local stand-ins, and the health check.

Three rotations in each Cekura world (`spec`, `permissive`). In `spec`, where Cekura refuses API
keys deletion, the health check then keeps a manual debt while its key is live, and clears it
once the key is deleted in the dashboard. Then admin mode: in the world where API keys may not
create keys at all (`nocreate`), one rotation minted and revoked with an admin secret's
credential (a dashboard session); a key deleted in the dashboard, found by the health check and
healed by the rotation it starts.

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

from cekura_rotator import ledger
from cekura_rotator.secret_value import fingerprint
from infra.local.lambda_bridge import FUNCTION_ARN, SCHEDULED_EVENT, FakeLambdaContext
from infra.local.stack import (
    LocalStack,
    delete_in_dashboard,
    enable_rotation,
    local_stack,
    patched_environ,
    secret_json,
)

ROTATIONS = 3
# The health function's own variables, as the template sets them (besides all of the rotator's).
HEALTH_ENV = {"ROTATION_FUNCTION_ARN": FUNCTION_ARN, "HEALTH_CURSOR_PARAMETER": ""}


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
        if mode == "spec":
            failures += _manual_debt_cleared(stack, arn, project=project)
    return failures


def _manual_debt_cleared(stack: LocalStack, arn: str, *, project: int) -> int:
    """The health check keeps a manual debt while Cekura accepts its key, and clears it once the
    key is deleted in the dashboard; 1 if it did not."""
    manual = _manual_keys(stack, arn)
    if not manual:
        print("\n   (no manual debt to show)")
        return 1
    first, _ = _health_check(stack, "health check (hourly between rotations)")
    kept = first["manual_cleared"] == 0
    key_id = manual[0]
    delete_in_dashboard(stack.fake, key_id, project_id=project)
    print(f"\n-- key {key_id} deleted in the Cekura dashboard, as its manual record asks")
    second, _ = _health_check(stack, "health check, an hour later")
    cleared = second["manual_cleared"] == 1 and key_id not in _manual_keys(stack, arn)
    print(
        f"   manual records left: keys {', '.join(map(str, _manual_keys(stack, arn))) or 'none'}"
        + ("; the deleted key's record cleared itself" if cleared else "; NOT CLEARED")
    )
    return 0 if kept and cleared else 1


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
            before = len(stack.bridge.invocations)
            summary, logs = _health_check(stack, "health check (hourly between rotations)")
            took = sum(i.seconds for i in stack.bridge.invocations[before:])
            if summary["healed"] != [arn] or len(stack.bridge.invocations) != before + 4:
                print("   the health check did NOT start a rotation")
                return failures + 1
            failures += _report(
                stack,
                arn,
                project=project,
                title="the rotation the health check started, minted with the admin credential",
                took=took,
                logs=logs,
            )
            if not failures and stack.fake.is_live(_current(sm, arn)["api_key"]):
                print("   recovered: AWSCURRENT holds a live key again")
    return failures


def _health_check(stack: LocalStack, title: str) -> tuple[dict[str, Any], str]:
    """One scheduled run of the health function (in this process, like the rotation function),
    reported; returns its answer, and what it and any rotation it started logged."""
    from cekura_rotator.health import handler as health

    context = FakeLambdaContext(function_name="cekura-rotator-health", timeout_seconds=300)
    with patched_environ(HEALTH_ENV):
        health.health_check.cache_clear()
        try:
            with _captured() as out:
                summary: dict[str, Any] = health.lambda_handler(dict(SCHEDULED_EVENT), context)
        finally:
            health.health_check.cache_clear()
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    print(f"\n-- {title}")
    print(f"   answer: {json.dumps(summary)}")
    for record in lines:
        said = _health_line(record)
        if said:
            print(f"   {said}")
    metrics = _emf(lines)
    shown = ", ".join(f"{name} {value:g}" for name, value in metrics.items() if value)
    print(f"   metrics: {shown or 'all zero'}")
    return summary, out.getvalue()


def _health_line(record: dict[str, Any]) -> str | None:
    """A health-check log record, told in a line (ids and fingerprints only, as logged)."""
    message = str(record.get("message", ""))
    key = f"key {record.get('key_id')}"
    if message.startswith("Manual revocation kept"):
        return f"manual debt {key}: Cekura still accepts it, so the record is kept"
    if message.startswith("Manual revocation record cleared"):
        return f"manual debt {key}: Cekura no longer knows it, so the record is cleared"
    if message.startswith("Cekura rejects the current key"):
        return f"found: Cekura rejects the current {key} (HTTP {record.get('status')})"
    if message.startswith("Rotation started to replace the rejected key"):
        return f"healed: RotateSecret started (version {record.get('version_id')})"
    return None


def _emf(records: list[dict[str, Any]]) -> dict[str, float]:
    """The health check's metrics, from the EMF document Powertools printed (not those of a
    rotation it started, which runs in this process too: they have a `Step` dimension)."""
    values: dict[str, float] = {}
    for document in records:
        if "_aws" not in document or "Step" in document:
            continue
        for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
            value = document[metric["Name"]]
            values[metric["Name"]] = sum(value) if isinstance(value, list) else value
    return values


def _manual_keys(stack: LocalStack, arn: str) -> list[int]:
    """The ids of the keys the secret's record holds for deletion in the dashboard."""
    stages = stack.client().describe_secret(SecretId=arn)["VersionIdsToStages"]
    return sorted(
        e.key_id
        for e in ledger.entries(stages)
        if e.state is ledger.State.MANUAL and e.key_id is not None
    )


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
            f"     {version}  {','.join(labels):<19} key id {value.get('key_id', '-'):<3} "
            f"{fingerprint(key)}  {'live' if key and stack.fake.is_live(key) else 'revoked'}"
        )
    live = stack.fake.live_keys(project)
    print(f"   keys live at Cekura: {', '.join(f'{k.id} ({k.name})' for k in live)}")
    deleted = [r for r in records if r.get("message") == "Deleted key"]
    manual = _manual_keys(stack, arn)
    if deleted:
        print(f"   revoked by the rotator: key {', '.join(str(r['key_id']) for r in deleted)}")
    if manual:
        ids = ", ".join(map(str, manual))
        print(f"   left for manual revocation (Cekura refused API-key deletion): key {ids}")
    if not deleted and not manual:
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
