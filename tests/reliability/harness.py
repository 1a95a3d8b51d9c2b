"""Drives rotations the way Secrets Manager does, with faults and crashes injected on the way.

Real parts wherever they can produce the behaviour: moto for Secrets Manager, the fake Cekura
over real HTTP (its `Fault`s), the rotator's own clients. Stand-ins only for what no real part
can produce on demand, or produce as AWS does:
- `AwsFaults` stubs Secrets Manager's transport for one operation at a time, through botocore's
  event system on the rotator's client: moto cannot be told to throttle, deny KMS access or fail
  internally. Raising in `before-call` skips botocore's own retries, so each injected error is
  what the rotator sees after botocore gave up.
- `refuse_overwrites_like_aws` corrects moto, which lets PutSecretValue overwrite a version's
  value where AWS refuses.
- `LambdaDied` is the Lambda being killed mid-step (timeout, out of memory). It is a
  BaseException, which no step catches, so no compensation runs, exactly as with a real kill.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.exceptions import ClientError

from cekura_rotator import handler
from cekura_rotator.cekura import CekuraClient, Credential, KeyInfo
from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.errors import CekuraError, CekuraUnavailableError, OrphanKeyError
from cekura_rotator.secret_value import MintedKey
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator.steps import RotationRequest, Rotator, Step
from infra.local.fake_cekura import FakeCekura, Fault, RouteName
from infra.local.lambda_bridge import ACCOUNT_ID, REGION, FakeLambdaContext
from infra.local.stack import AdminKind, AdminSecret, create_admin_secret, secret_json
from tests.reliability import invariants
from tests.reliability.invariants import Evidence

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from tests.conftest import LogCapture, World
    from tests.reliability.conftest import Ledger

Mode = Literal["spec", "permissive", "nocreate"]
STEPS = tuple(Step)

# Cekura's read timeout in these tests, and a delay that outlasts it.
# (0.25 s proved too tight on a loaded 2-core machine: an ordinary create timed out.)
READ_TIMEOUT = 0.5
TIMEOUT_DELAY = 0.75


class LambdaDied(BaseException):  # named for what happens, not as an error
    """The Lambda was killed mid-step: nothing after this point of the step runs."""


# -- Secrets Manager faults -----------------------------------------------------------------

AWS_ERRORS: dict[str, tuple[str, str, int]] = {
    "throttling": ("ThrottlingException", "Rate exceeded", 400),
    "kms-access-denied": ("AccessDeniedException", "Access to KMS is not allowed", 400),
    "internal-error": ("InternalServiceError", "An error occurred on the server side.", 500),
    "not-found": (
        "ResourceNotFoundException",
        "Secrets Manager can't find the specified secret value for staging label: AWSPENDING",
        400,
    ),
}


@dataclass
class AwsFault:
    """The `skip`+1-th next call of `operation` fails with `error`, or the Lambda dies there.

    `after=True` lets the call succeed, then kills the Lambda as it returns or, with an
    `error`, makes the caller see that error although the call was carried out (an answer lost
    after the write: AWS can report a failed write that did happen). With `secret_id`, only
    calls naming that secret count (an admin secret's read among the rotated secret's).
    """

    operation: str
    error: str | None = None
    skip: int = 0
    after: bool = False
    secret_id: str | None = None

    def describe(self) -> str:
        what = self.error or ("crash after" if self.after else "crash before")
        if self.error and self.after:
            what = f"{self.error} after the write"
        on = f"[{self.secret_id}]" if self.secret_id else ""
        return f"{self.operation}{on}#{self.skip + 1}:{what}"

    def matches(self, operation: str, secret_id: str | None) -> bool:
        return self.operation == operation and self.secret_id in (None, secret_id)


class AwsFaults:
    """Armed faults for one boto3 client's Secrets Manager calls (see the module docstring)."""

    def __init__(self, client: SecretsManagerClient):
        self._armed: list[AwsFault] = []
        self._after_call: list[tuple[str, str | None]] = []  # (operation, error or a kill)
        self.fired: list[str] = []
        client.meta.events.register("before-call.secrets-manager", self._before)
        client.meta.events.register("after-call.secrets-manager", self._after)

    def arm(self, fault: AwsFault) -> None:
        self._armed.append(fault)

    def clear(self) -> None:
        self._armed.clear()
        self._after_call.clear()

    def _before(self, model: Any, params: Any = None, **_: Any) -> None:
        operation = str(model.name)
        secret_id = _secret_id(params)
        fault = next((f for f in self._armed if f.matches(operation, secret_id)), None)
        if fault is None:
            return
        if fault.skip:
            fault.skip -= 1
            return
        self._armed.remove(fault)
        self.fired.append(fault.describe())
        if fault.after:
            self._after_call.append((operation, fault.error))
            return
        if fault.error is None:
            raise LambdaDied(f"killed as {operation} began")
        raise _client_error(operation, *AWS_ERRORS[fault.error])

    def _after(self, model: Any, **_: Any) -> None:
        operation = str(model.name)
        pending = next((p for p in self._after_call if p[0] == operation), None)
        if pending is None:
            return
        self._after_call.remove(pending)
        if pending[1] is None:
            raise LambdaDied(f"killed as {operation} returned")
        raise _client_error(operation, *AWS_ERRORS[pending[1]])


def _secret_id(request: Any) -> str | None:
    """The SecretId of a serialized Secrets Manager request (JSON protocol), if any."""
    body = request.get("body") if isinstance(request, dict) else None
    try:
        document = json.loads(body or b"{}")
    except (TypeError, ValueError):
        return None
    secret_id = document.get("SecretId") if isinstance(document, dict) else None
    return secret_id if isinstance(secret_id, str) else None


def _client_error(operation: str, code: str, message: str, status: int) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def refuse_overwrites_like_aws(client: SecretsManagerClient) -> None:
    """PutSecretValue with a token that names a version holding another value: AWS refuses
    (ResourceExistsException), moto overwrites the value. Correct moto on the rotator's client,
    so that a scenario cannot lose a stored key to a quirk AWS does not have."""

    def check(params: dict[str, Any], **_: Any) -> None:
        from moto.secretsmanager.models import secretsmanager_backends

        secrets = secretsmanager_backends[ACCOUNT_ID][REGION].secrets
        try:
            secret = secrets[params["SecretId"]]
        except KeyError:
            return
        version = secret.versions.get(str(params.get("ClientRequestToken")))
        stored = version.get("secret_string") if version else None
        if stored is not None and stored != params.get("SecretString"):
            raise _client_error(
                "PutSecretValue",
                "ResourceExistsException",
                "You can't modify an existing version, you can only create a new version.",
                400,
            )

    client.meta.events.register("before-parameter-build.secrets-manager.PutSecretValue", check)


# -- Cekura faults and crashes ----------------------------------------------------------------

CEKURA_FAULTS: dict[str, Fault] = {
    "429": Fault(status=429),
    "429-retry-after": Fault(status=429, retry_after="1"),
    "429-persistent": Fault(status=429, times=60),
    "500": Fault(status=500),
    "502": Fault(status=502),
    "503": Fault(status=503),
    "503-persistent": Fault(status=503, times=60),
    "timeout": Fault(delay=TIMEOUT_DELAY),
    "dropped-connection": Fault(drop=True),
    "lost-response": Fault(lost_response=True),
    "malformed-json": Fault(body=b'{"id": 1, "key": '),
    "201-without-key": Fault(missing_key=True),
    "200-created": Fault(success_status=200),
    "401": Fault(status=401),
    "401-persistent": Fault(status=401, times=60),
    "403": Fault(status=403),
    "404": Fault(status=404),
}


class CrashableCekura(CekuraClient):
    """The real Cekura client; a scenario can kill the Lambda as one of its calls begins."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.crash_on: dict[str, int] = {}  # method -> calls to let through first

    def _maybe_die(self, method: str) -> None:
        if method not in self.crash_on:
            return
        if self.crash_on[method] > 0:
            self.crash_on[method] -= 1
            return
        del self.crash_on[method]
        raise LambdaDied(f"killed as Cekura {method} began")

    def create_key(
        self,
        credential: Credential | str,
        *,
        name: str,
        project: int,
        deadline: float | None = None,
    ) -> MintedKey:
        self._maybe_die("create_key")
        return super().create_key(credential, name=name, project=project, deadline=deadline)

    def validate(
        self,
        credential: Credential | str,
        *,
        project_id: int,
        deadline: float | None = None,
        activation_wait: float = 0.0,
    ) -> None:
        self._maybe_die("validate")
        super().validate(
            credential, project_id=project_id, deadline=deadline, activation_wait=activation_wait
        )

    def delete_key(
        self, credential: Credential | str, key_id: int, *, deadline: float | None = None
    ) -> bool:
        self._maybe_die("delete_key")
        return super().delete_key(credential, key_id, deadline=deadline)

    def list_keys(
        self, credential: Credential | str, *, deadline: float | None = None
    ) -> list[KeyInfo]:
        self._maybe_die("list_keys")
        return super().list_keys(credential, deadline=deadline)


# -- the harness ------------------------------------------------------------------------------


@dataclass
class Attempt:
    """One step as Secrets Manager invoked it."""

    step: Step
    error: BaseException | None


class Rig:
    """Per-test plumbing, shared by every world a test builds (clients are slow to make)."""

    def __init__(
        self,
        make_world: Callable[..., World],
        logs: LogCapture,
        fake: FakeCekura,
        *,
        read_timeout: float = READ_TIMEOUT,
    ):
        self.make_world = make_world
        self.logs = logs
        self.fake = fake
        # The rotator's own client (faults attach to it); tests observe through the world's.
        self.store_client = boto3.client("secretsmanager", region_name=REGION)
        self.aws = AwsFaults(self.store_client)
        refuse_overwrites_like_aws(self.store_client)
        self.sleeps: list[float] = []
        self._active: Harness | None = None
        # 1: calls in a fixed order, so faults armed by call count hit where they are aimed.
        self.parallel_calls = 1
        # Backoff goes to `sleeps` instead of the clock, so retries cost no time.
        self.cekura = CrashableCekura(
            base_url=fake.url,
            read_timeout=read_timeout,
            connect_timeout=1.0,
            sleep=self.sleeps.append,
        )

    def harness(
        self,
        *,
        policy: str = "grace",
        mode: Mode = "spec",
        value: Callable[[str, int, int], str | bytes] | str | bytes | None = None,
        admin: AdminKind | None = None,
    ) -> Harness:
        """A fresh secret to rotate. With `admin`, an admin secret holding that kind of
        credential (an admin API key, or a dashboard session as `bearer_token`) is made for the
        secret's organization and configured as the function's default (see `Harness.use_admin`).
        """
        self.fake.mode = mode
        if value is None:
            value = lambda key, project, key_id: secret_json(key, project, key_id=key_id)  # noqa: E731
        world = self.make_world(value)
        self._active = Harness(self, world, policy)
        if admin is not None:
            self._active.use_admin(admin)
        return self._active

    def active(self) -> Harness:
        """The harness built last: the one the handler runs for."""
        assert self._active is not None, "no harness built yet"
        return self._active

    def forget_logs(self) -> None:
        """Drop what was logged so far (long runs would otherwise rescan it all the time)."""
        self.logs.stream.seek(0)
        self.logs.stream.truncate()

    def reset(self) -> None:
        """Between two worlds of one test: no fault or crash carries over."""
        self.fake.clear_faults()
        self.aws.clear()
        self.cekura.crash_on.clear()


class Harness:
    """One secret being rotated: steps, Secrets Manager's retries, faults and the checks."""

    def __init__(self, rig: Rig, world: World, policy: str):
        self.rig = rig
        self.world = world
        self.evidence = Evidence()
        self._first_minted = len(rig.fake.minted_secrets())
        # Keys the scenario starts from: AWSCURRENT may hold one without a validation by us.
        self.trusted_key_ids = {k.id for k in rig.fake.all_keys()}
        self.attempts: list[Attempt] = []
        self.via_handler = False
        self._log_start = len(rig.logs.text)
        self._settle = 0.0
        self.policy = policy
        # The function's admin configuration (CEKURA_ADMIN_SECRET_ARN and the allowed ones),
        # and every admin secret made for this secret: its credential must never be output.
        self.admin_secret_arn: str | None = None
        self.allowed_admin_secret_arns: frozenset[str] = frozenset()
        self.admin_secrets: list[AdminSecret] = []
        self.rotator = self._rotator(policy)

    # -- world access -------------------------------------------------------------------------

    @property
    def fake(self) -> FakeCekura:
        return self.rig.fake

    @property
    def sm(self) -> SecretsManagerClient:
        return self.world.sm

    @property
    def arn(self) -> str:
        return self.world.arn

    @property
    def project_id(self) -> int:
        return self.world.project_id

    def minted(self) -> list[str]:
        """Every key the fake made since this harness was built (this secret's, mostly)."""
        return self.rig.fake.minted_secrets()[self._first_minted :]

    @property
    def log_text(self) -> str:
        """What the rotator logged since this harness was made."""
        return self.rig.logs.text[self._log_start :]

    def _rotator(self, policy: str) -> Rotator:
        config = Config(
            cekura_api_url=self.fake.url,
            revocation_policy=RevocationPolicy(policy),
            validate_max_wait=2.0,
            read_timeout=READ_TIMEOUT,
            admin_secret_arn=self.admin_secret_arn,
            allowed_admin_secret_arns=self.allowed_admin_secret_arns,
        )
        return Rotator(
            config=config,
            store=SecretsStore(self.rig.store_client),
            cekura=self.rig.cekura,
            sleep=self.rig.sleeps.append,
            parallel_calls=self.rig.parallel_calls,
        )

    def set_policy(self, policy: str) -> None:
        self.policy = policy
        self.rotator = self._rotator(policy)

    def set_mode(self, mode: Mode) -> None:
        self.fake.mode = mode

    # -- admin credential -----------------------------------------------------------------------

    @property
    def admin(self) -> AdminSecret | None:
        """The admin secret made last, if any."""
        return self.admin_secrets[-1] if self.admin_secrets else None

    def make_admin_secret(
        self, kind: AdminKind, *, projects: Iterable[int] | None = None
    ) -> AdminSecret:
        """An admin secret for the secret's organization, not yet configured on the function."""
        made = create_admin_secret(
            self.sm, self.fake, kind, project_id=self.project_id, projects=projects
        )
        self.admin_secrets.append(made)
        return made

    def use_admin(self, kind: AdminKind, *, projects: Iterable[int] | None = None) -> AdminSecret:
        """Make an admin secret and configure it as the function's default admin secret."""
        made = self.make_admin_secret(kind, projects=projects)
        self.configure_admin(made.arn)
        return made

    def configure_admin(self, default: str | None, *allowed: str) -> None:
        """The function's CEKURA_ADMIN_SECRET_ARN and CEKURA_ALLOWED_ADMIN_SECRET_ARNS."""
        self.admin_secret_arn = default
        self.allowed_admin_secret_arns = frozenset(allowed)
        self.rotator = self._rotator(self.policy)

    # -- faults -------------------------------------------------------------------------------

    def inject(self, route: RouteName, fault: Fault) -> None:
        self.fake.inject(route, fault)
        self._settle = max(self._settle, fault.delay)

    def clear_faults(self) -> None:
        self.rig.reset()

    # -- running steps --------------------------------------------------------------------------

    def start_rotation(self) -> str:
        return self.world.start_rotation()

    def step(self, step: Step, token: str) -> BaseException | None:
        """Invoke one step as Secrets Manager would; return what it raised (None: success)."""
        error: BaseException | None = None
        try:
            if self.via_handler:
                event = {"Step": str(step), "SecretId": self.arn, "ClientRequestToken": token}
                self.evidence.output(handler.lambda_handler(event, FakeLambdaContext()))
            else:
                self.evidence.output(self.rotator.run(RotationRequest(step, self.arn, token)))
        except (Exception, LambdaDied) as e:  # a failed step, as Secrets Manager records it
            error = e
            self.evidence.output(e)
            if step is Step.CREATE:
                self.evidence.create_failures += 1
                if isinstance(e, CekuraError) and not isinstance(e, OrphanKeyError):
                    self.evidence.lost_answers += 1
            if isinstance(e, CekuraUnavailableError) and self._settle:
                # A delayed request is still being served: let the fake finish it (it may mint
                # a key), as it would have long before Secrets Manager's next retry.
                time.sleep(self._settle)
                self._settle = 0.0
        if self.fake.pending_faults() == 0:
            self._settle = 0.0
        self.attempts.append(Attempt(step, error))
        return error

    def drive(
        self,
        token: str,
        *,
        start: Step = Step.CREATE,
        arm: Callable[[Step, int], None] | None = None,
        clear_after_failure: bool = True,
        max_failures: int = 6,
    ) -> bool:
        """Run from `start` through finishSecret. A failed step is retried with the same token,
        then the steps after it, as Secrets Manager does; `arm(step, attempt)` runs before each.
        After a failure the faults clear (unless told otherwise). True when finishSecret passed.
        """
        index, tries, failures = STEPS.index(start), dict.fromkeys(STEPS, 0), 0
        while index < len(STEPS):
            step = STEPS[index]
            if arm is not None:
                arm(step, tries[step])
            tries[step] += 1
            if self.step(step, token) is None:
                index += 1
                continue
            failures += 1
            if clear_after_failure:
                self.clear_faults()
            if failures >= max_failures:
                return False
        return True

    def rotate(self) -> str:
        """One rotation with no fault armed; it must go through."""
        token = self.start_rotation()
        assert self.drive(token), f"a clean rotation failed: {self.failures()}"
        return token

    def assert_outcome(
        self, completed: bool, since: int, step: Step, expect: type[BaseException] | None
    ) -> BaseException | None:
        """The rotation completed, and its first failed attempt since `since` (kills aside) is
        `expect` at `step`, or (`expect` None) no attempt failed. Returns that failure."""
        failures = [
            a for a in self.attempts[since:] if a.error and not isinstance(a.error, LambdaDied)
        ]
        assert completed, f"the rotation did not complete: {self.failures()}"
        if expect is None:
            assert not failures, f"expected no failed step, got {self.failures()}"
            return None
        first = failures[0]
        assert first.step is step
        assert type(first.error) is expect, f"{expect.__name__} != {first.error!r}"
        return first.error

    def failures(self) -> list[tuple[str, str]]:
        """(step, error) of every failed attempt, for assertion messages."""
        return [
            (str(a.step), f"{type(a.error).__name__}: {a.error}") for a in self.attempts if a.error
        ]

    # -- checks ---------------------------------------------------------------------------------

    def check(
        self,
        ledger: Ledger,
        *,
        completed: str | None = None,
        swept: bool = False,
        grace_bound: bool = False,
        extra_outputs: tuple[str, ...] = (),
    ) -> None:
        """The invariants after a scenario. `completed`: the token whose rotation must have
        finished; `swept`: its finishSecret could list and delete (permissive mode);
        `grace_bound`: grace with deletion permitted throughout."""
        all_versions = invariants.versions(self.sm, self.arn)
        found = invariants.strays(self.fake, self.project_id, all_versions)
        texts = [*self.rig.logs.lines, *self.evidence.outputs, *extra_outputs]
        excused = self.evidence.excused_key_ids
        checks: list[Callable[[], list[str]]] = [
            lambda: invariants.current_is_live(self.sm, self.arn, self.fake),
            lambda: invariants.strays_accounted(found, self.evidence, self.log_text),
            lambda: invariants.key_material(texts, self.fake.minted_secrets()),
            lambda: invariants.current_was_accepted(
                self.sm, self.arn, self.fake, trusted=self.trusted_key_ids
            ),
            lambda: invariants.labelled_keys_live(self.fake, all_versions, excused=excused),
        ]
        if self.admin_secrets:
            credentials = [a.credential for a in self.admin_secrets]
            checks.append(lambda: admin_credentials_absent(texts, credentials))
            checks.append(lambda: admin_credentials_not_stored(self.sm, self.arn, credentials))
        if completed is not None:
            token = completed
            checks.append(lambda: invariants.rotation_completed(all_versions, token))
            if swept:
                checks.append(lambda: invariants.no_strays_of(found, token))
        if grace_bound:
            checks.append(lambda: invariants.grace_bound(self.fake, self.project_id, self.evidence))
        invariants.verify(ledger, *checks)

    def settle(self, ledger: Ledger, *, deletion_allowed: bool) -> None:
        """Invariant 8: with every fault cleared, two more rotations pay every debt the policy
        owes (or, where Cekura refuses deletion, record it for the dashboard)."""
        self.clear_faults()
        self.rotate()
        self.rotate()
        if self.policy == "off":
            return
        all_versions = invariants.versions(self.sm, self.arn)
        excused = self.evidence.excused_key_ids
        invariants.verify(
            ledger,
            lambda: invariants.debts_settled(
                self.fake, all_versions, deletion_allowed=deletion_allowed, excused=excused
            ),
            lambda: invariants.labelled_keys_live(self.fake, all_versions, excused=excused),
        )


# -- admin credential checks (part of invariant 4) ----------------------------------------------


def admin_credentials_absent(texts: Iterable[str], credentials: Iterable[str]) -> list[str]:
    """No admin credential (an admin API key or a session token) in any output. Session tokens
    are not key-shaped, so `invariants.key_material` would not see them: checked by value."""
    secrets = [c for c in credentials if c]
    return [
        f"4: an admin credential in output #{number}"
        for number, text in enumerate(texts)
        if any(secret in text for secret in secrets)
    ]


def admin_credentials_not_stored(
    sm: SecretsManagerClient, arn: str, credentials: Iterable[str]
) -> list[str]:
    """No version of the rotated secret holds an admin credential."""
    secrets = [c for c in credentials if c]
    problems = []
    for version_id in sm.describe_secret(SecretId=arn)["VersionIdsToStages"]:
        try:
            raw = sm.get_secret_value(SecretId=arn, VersionId=version_id).get("SecretString")
        except ClientError:
            continue
        if raw and any(secret in raw for secret in secrets):
            problems.append(f"4: version {version_id[:8]} of the rotated secret holds an admin key")
    return problems
