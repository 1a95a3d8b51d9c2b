"""Drives rotations the way Secrets Manager does, with faults and crashes injected on the way.

Real parts wherever they can produce the behaviour: moto for Secrets Manager, the fake Cekura
over real HTTP (its `Fault`s), the rotator's own clients. Stand-ins only for what no real part
can produce on demand, or produce as AWS does:
- `AwsFaults` stubs Secrets Manager's transport for one operation at a time, through botocore's
  event system on the rotator's client: moto cannot be told to throttle, deny KMS access or fail
  internally. Raising in `before-call` skips botocore's own retries, so each injected error is
  what the rotator sees after botocore gave up.
- `StrictAws` (tests/strict_aws.py), the strict AWS model, is attached to the rotator's client
  (every rule) and to the tests' own client (`observer`: the actors write with it, the checks read
  ground truth with it). Secrets Manager behaves as AWS documents it, not as moto does.
- `InjectedTimeouts` wraps the transport of the rotator's Cekura client: a read timeout is
  injected where a test means one (the request reached the fake, which did the work, and the
  answer was lost; or the request never got there). No other timeout can fire: the client's read
  timeout is far longer than anything the fake takes on a loaded machine.
- `LambdaDied` is the Lambda being killed mid-step (timeout, out of memory). It is a
  BaseException, which no step catches, so no compensation runs, exactly as with a real kill.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import boto3
import httpx
from botocore.exceptions import ClientError

from cekura_rotator import handler, key_names, ledger
from cekura_rotator.cekura import (
    KEYS_PATH,
    USER_AGENT,
    VALIDATE_PATH,
    CekuraClient,
    Credential,
    KeyInfo,
)
from cekura_rotator.config import Config, RevocationPolicy
from cekura_rotator.errors import CekuraError, OrphanKeyError
from cekura_rotator.key_names import key_stem
from cekura_rotator.secret_value import MintedKey
from cekura_rotator.secrets_store import SecretsStore
from cekura_rotator.steps import RotationRequest, Rotator, Step
from infra.local.fake_cekura import FakeCekura, Fault, RouteName
from infra.local.lambda_bridge import FakeLambdaContext
from infra.local.stack import (
    AdminKind,
    AdminSecret,
    create_admin_secret,
    secret_json,
)
from tests.reliability import invariants
from tests.reliability.invariants import Evidence
from tests.strict_aws import CURRENT, MAX_LABELS, PENDING, PREVIOUS, StrictAws

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

    from tests.conftest import LogCapture, World
    from tests.reliability.conftest import Ledger

Mode = Literal["spec", "permissive", "nocreate"]
STEPS = tuple(Step)

# Cekura's read timeout in these tests: far longer than the fake ever takes, however loaded the
# machine, so that no timeout fires unless a test injects one (`LostAnswer`). (0.5 s once fired
# on a loaded 2-core machine for an ordinary create, and a verdict depended on the machine.)
READ_TIMEOUT = 30.0
KEY_NAME_PREFIX = "rotator"  # the rotator's default CEKURA_KEY_NAME_PREFIX
# The organization every test project belongs to (tests/conftest.py's make_world).
ORGANIZATION = "Acme"


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


def _is_record(label: object) -> bool:
    return isinstance(label, str) and ledger.parse_label(label) is not None


# What a Secrets Manager call does, told from its parameters: faults are aimed at these, never at
# a call's position among the others (which a change of the rotator would silently move).
CALLS: dict[str, Callable[[Mapping[str, Any]], bool]] = {
    "read-current": lambda p: p.get("VersionStage") == CURRENT and not p.get("VersionId"),
    "read-pending": lambda p: p.get("VersionStage") == PENDING,
    "read-by-id": lambda p: bool(p.get("VersionId")) and p.get("VersionStage") != PENDING,
    "move-current": lambda p: p.get("VersionStage") == CURRENT and bool(p.get("MoveToVersionId")),
    "remove-pending": lambda p: p.get("VersionStage") == PENDING and not p.get("MoveToVersionId"),
    "remove-previous": lambda p: p.get("VersionStage") == PREVIOUS and not p.get("MoveToVersionId"),
    "record": lambda p: _is_record(p.get("VersionStage")) and bool(p.get("MoveToVersionId")),
    "clear-record": lambda p: _is_record(p.get("VersionStage")) and not p.get("MoveToVersionId"),
    "mark-untested": lambda p: p.get("VersionStage") == ledger.UNTESTED,
}


@dataclass
class AwsFault:
    """The `skip`+1-th next call of `operation` (that does `what`, one of `CALLS`) fails with
    `error`, or the Lambda dies there.

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
    what: str | None = None

    def describe(self) -> str:
        what = self.error or ("crash after" if self.after else "crash before")
        if self.error and self.after:
            what = f"{self.error} after the write"
        on = f"[{self.secret_id}]" if self.secret_id else ""
        doing = f"({self.what})" if self.what else ""
        return f"{self.operation}{doing}{on}#{self.skip + 1}:{what}"

    def matches(self, operation: str, secret_id: str | None, params: Mapping[str, Any]) -> bool:
        return (
            self.operation == operation
            and self.secret_id in (None, secret_id)
            and (self.what is None or CALLS[self.what](params))
        )


class AwsFaults:
    """Armed faults for one boto3 client's Secrets Manager calls (see the module docstring).
    `lost_answer` is told of each answer lost after a write (the strict model counts them)."""

    def __init__(
        self, client: SecretsManagerClient, lost_answer: Callable[[], None] = lambda: None
    ):
        self._armed: list[AwsFault] = []
        self._after_call: list[tuple[str, str | None]] = []  # (operation, error or a kill)
        self._lost_answer = lost_answer
        self.fired: list[str] = []
        client.meta.events.register("before-parameter-build.secrets-manager", _keep_params)
        client.meta.events.register("before-call.secrets-manager", self._before)
        client.meta.events.register("after-call.secrets-manager", self._after)

    def arm(self, fault: AwsFault) -> None:
        self._armed.append(fault)

    def clear(self) -> None:
        self._armed.clear()
        self._after_call.clear()

    def _before(self, model: Any, params: Any = None, context: Any = None, **_: Any) -> None:
        operation = str(model.name)
        secret_id = _secret_id(params)
        api: Mapping[str, Any] = (context or {}).get(_FAULT_PARAMS, {})
        fault = next((f for f in self._armed if f.matches(operation, secret_id, api)), None)
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

    def _after(self, model: Any, http_response: Any = None, **_: Any) -> None:
        operation = str(model.name)
        pending = next((p for p in self._after_call if p[0] == operation), None)
        if pending is None:
            return
        self._after_call.remove(pending)
        if pending[1] is None:
            raise LambdaDied(f"killed as {operation} returned")
        self._lost_answer()
        raise _client_error(operation, *AWS_ERRORS[pending[1]])


_FAULT_PARAMS = "aws_faults.params"


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    context[_FAULT_PARAMS] = dict(params)


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


# -- Cekura faults and crashes ----------------------------------------------------------------


@dataclass(frozen=True)
class LostAnswer:
    """A read timeout a test means to cause, which the fake cannot produce on its own without a
    delay that a loaded machine could stretch. `sent`: the request reached Cekura, which did the
    work, and the answer was lost; else the request was lost on its way and nothing happened.
    Either way the client sees `httpx.ReadTimeout`."""

    sent: bool = True
    times: int = 1


CekuraFault = Fault | LostAnswer

CEKURA_FAULTS: dict[str, CekuraFault] = {
    "429": Fault(status=429),
    "429-retry-after": Fault(status=429, retry_after="1"),
    "429-persistent": Fault(status=429, times=60),
    "500": Fault(status=500),
    "502": Fault(status=502),
    "503": Fault(status=503),
    "503-persistent": Fault(status=503, times=60),
    "timeout": LostAnswer(sent=True),
    "timeout-unsent": LostAnswer(sent=False),
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


def route_of(request: httpx.Request) -> RouteName | None:
    """Which Cekura operation a request is, by its method and path."""
    path = request.url.path
    if path == VALIDATE_PATH:
        return "validate"
    if path == KEYS_PATH:
        return {"POST": "create", "GET": "list"}.get(request.method)  # type: ignore[return-value]
    if path.startswith(KEYS_PATH):
        return {"DELETE": "delete", "GET": "retrieve"}.get(request.method)  # type: ignore[return-value]
    return None


class InjectedTimeouts(httpx.BaseTransport):
    """The rotator's Cekura transport, with read timeouts injected per operation (`LostAnswer`).
    Everything else goes to the real fake over HTTP."""

    def __init__(self, inner: httpx.BaseTransport | None = None):
        self._inner = inner or httpx.HTTPTransport()
        self._lock = threading.Lock()
        self._armed: dict[RouteName, deque[list[Any]]] = {}

    def arm(self, route: RouteName, fault: LostAnswer) -> None:
        with self._lock:
            self._armed.setdefault(route, deque()).append([fault, fault.times])

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()

    def pending(self) -> int:
        with self._lock:
            return sum(left for queue in self._armed.values() for _, left in queue)

    def _take(self, route: RouteName | None) -> LostAnswer | None:
        with self._lock:
            queue = self._armed.get(route) if route else None
            if not queue:
                return None
            head = queue[0]
            head[1] -= 1
            if head[1] == 0:
                queue.popleft()
            fault: LostAnswer = head[0]
            return fault

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        fault = self._take(route_of(request))
        if fault is None:
            return self._inner.handle_request(request)
        if fault.sent:
            answer = self._inner.handle_request(request)
            answer.read()  # the fake did the work; its answer never arrives
            answer.close()
        raise httpx.ReadTimeout("injected: no answer within the read timeout", request=request)

    def close(self) -> None:
        self._inner.close()


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
    """Per-test plumbing, shared by every world a test builds (clients are slow to make).

    `model` is the strict AWS model every Secrets Manager call of the test goes through. With a
    `ledger`, invariants 10 and 11 are checked after every step the rotator runs.
    """

    def __init__(
        self,
        make_world: Callable[..., World],
        logs: LogCapture,
        fake: FakeCekura,
        *,
        read_timeout: float = READ_TIMEOUT,
        ledger: Ledger | None = None,
        model: StrictAws | None = None,
    ):
        self.make_world = make_world
        self.logs = logs
        self.fake = fake
        self.ledger = ledger
        self.model = model or StrictAws()
        # The rotator's own client (faults attach to it); tests observe through the world's.
        self.store_client = boto3.client("secretsmanager", region_name="us-east-1")
        self.aws = AwsFaults(self.store_client, self.model.count_lost_answer)
        self.model.attach(self.store_client, role="rotator")
        self._observers: set[int] = set()
        self.sleeps: list[float] = []
        self._active: Harness | None = None
        # 1: calls in a fixed order, so faults armed by call count hit where they are aimed.
        self.parallel_calls = 1
        # Injected read timeouts (everything else reaches the fake over HTTP).
        self.transport = InjectedTimeouts()
        # Backoff goes to `sleeps` instead of the clock, so retries cost no time.
        self.cekura = CrashableCekura(
            base_url=fake.url,
            read_timeout=read_timeout,
            connect_timeout=5.0,
            sleep=self.sleeps.append,
            http_client=httpx.Client(
                transport=self.transport,
                trust_env=False,
                follow_redirects=False,
                headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            ),
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
        if id(world.sm) not in self._observers:
            self._observers.add(id(world.sm))
            self.model.attach(world.sm, role="observer")
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
        """Between two worlds of one test: no fault, crash or actor carries over."""
        self.fake.clear_faults()
        self.aws.clear()
        self.transport.clear()
        self.cekura.crash_on.clear()
        self.model.clear_hooks()

    def pending_faults(self) -> int:
        """Cekura faults armed and not consumed yet (at the fake and in the transport)."""
        return self.fake.pending_faults() + self.transport.pending()


class Harness:
    """One secret being rotated: steps, Secrets Manager's retries, faults, actors and checks."""

    def __init__(self, rig: Rig, world: World, policy: str):
        self.rig = rig
        self.world = world
        self.evidence = Evidence()
        # Keys the scenario starts from: AWSCURRENT may hold one without a validation by us.
        self.trusted_key_ids = {k.id for k in rig.fake.all_keys()}
        self.attempts: list[Attempt] = []
        self.via_handler = False
        self._log_start = len(rig.logs.text)
        self._refusals_seen = len(rig.model.refusals)
        self.policy = policy
        # The function's admin configuration (CEKURA_ADMIN_SECRET_ARN and the allowed ones),
        # and every admin secret made for this secret: its credential must never be output.
        self.admin_secret_arn: str | None = None
        self.allowed_admin_secret_arns: frozenset[str] = frozenset()
        self.admin_secrets: list[AdminSecret] = []
        self.rotator = self._rotator(policy)
        name = world.sm.describe_secret(SecretId=world.arn)["Name"]
        # Every key the rotator mints for this secret, and no other, has a name starting so.
        self.stem = key_stem(KEY_NAME_PREFIX, name, world.arn)
        # Labels people attached (actors), and the keys of their making (never the rotator's).
        self.people_labels: set[str] = set()

    # -- world access -------------------------------------------------------------------------

    @property
    def fake(self) -> FakeCekura:
        return self.rig.fake

    @property
    def model(self) -> StrictAws:
        return self.rig.model

    @property
    def sm(self) -> SecretsManagerClient:
        return self.world.sm

    @property
    def arn(self) -> str:
        return self.world.arn

    @property
    def project_id(self) -> int:
        """The project the secret was created for (see `current_project`)."""
        return self.world.project_id

    def current_project(self) -> int:
        """The project AWSCURRENT's value names now (a person may have moved the secret)."""
        version = next((v for v in self.versions() if CURRENT in v.stages), None)
        return version.project_id if version and version.project_id else self.project_id

    def versions(self) -> list[invariants.Version]:
        """Every version as stored (ground truth: pruned ones too, whatever KMS says)."""
        return invariants.versions(self.sm, self.arn, truth=self.model)

    def labels(self) -> dict[str, tuple[str, ...]]:
        return self.model.labels(self.arn)

    def minted(self) -> list[str]:
        """Every key the fake made for this secret (its stem) or since it was built."""
        return self.rig.fake.minted_secrets()

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

    def inject(self, route: RouteName, fault: CekuraFault) -> None:
        """A Cekura fault for the next call(s) of `route`: at the fake, or a read timeout."""
        if isinstance(fault, LostAnswer):
            self.rig.transport.arm(route, fault)
        else:
            self.fake.inject(route, fault)
            if route == "delete" and fault.status == 404:
                self.evidence.delete_lies += fault.times

    def clear_faults(self) -> None:
        self.rig.reset()

    @contextmanager
    def calm(self) -> Iterator[None]:
        """No throttling and no lagging reads inside the block (the faults cleared)."""
        model = self.model
        model.catch_up()
        saved = (model.throttle_rate, model.read_lag)
        model.throttle_rate, model.read_lag = 0.0, 0
        try:
            yield
        finally:
            model.throttle_rate, model.read_lag = saved

    # -- running steps --------------------------------------------------------------------------

    def start_rotation(self) -> str:
        """RotateSecret, as AWS answers it (the strict model); raises ClientError if refused."""
        return self.world.start_rotation()

    def step(self, step: Step, token: str) -> BaseException | None:
        """Invoke one step as Secrets Manager would; return what it raised (None: success).
        Secrets Manager then ends a successful finishSecret its own way (AWSPENDING removed or
        kept), and invariants 10 and 11 are checked."""
        error: BaseException | None = None
        before = self.labels()
        try:
            if self.via_handler:
                event = {"Step": str(step), "SecretId": self.arn, "ClientRequestToken": token}
                self.evidence.output(handler.lambda_handler(event, FakeLambdaContext()))
            else:
                self.evidence.output(self.rotator.run(RotationRequest(step, self.arn, token)))
        except invariants.InvariantViolation:
            raise  # found by a check an actor's nested step ran: not a failure of this step
        except (Exception, LambdaDied) as e:  # a failed step, as Secrets Manager records it
            error = e
            self.evidence.output(e)
            if step is Step.CREATE:
                self.evidence.create_failures += 1
                if isinstance(e, CekuraError) and not isinstance(e, OrphanKeyError):
                    self.evidence.lost_answers += 1
        if error is None and step is Step.FINISH:
            self.model.rotation_finished(self.arn, token)
        self.attempts.append(Attempt(step, error))
        if self.rig.ledger is not None:
            settled = step is Step.FINISH and error is None and self.policy != "off"
            invariants.verify(self.rig.ledger, *self.step_checks(before, settled=settled))
        return error

    def step_checks(
        self, before: Mapping[str, tuple[str, ...]] | None = None, *, settled: bool = False
    ) -> list[Callable[[], list[str]]]:
        """Invariants 10 and 11 after a step that began with the labels `before`. `settled`: it
        was a finishSecret that settled the record, which must leave it as the labels allow
        (between two settlings, people may attach labels the rotator only answers at the next).
        Without `before`: only the refusals met since the last check."""
        refusals = self.model.refusals[self._refusals_seen :]
        self._refusals_seen = len(self.model.refusals)
        checks: list[Callable[[], list[str]]] = [
            lambda: invariants.no_refusal_for_rotator_labels(refusals)
        ]
        if before is not None:
            labels, was = self.labels(), dict(before)
            checks += [
                lambda: invariants.rotator_leaves_room(labels, before=was, settled=settled),
                lambda: invariants.manual_only_unheld(
                    self.fake, self.versions(), before=was, settled=settled
                ),
            ]
        return checks

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

    # -- actors: people and Secrets Manager, acting as AWS lets them ----------------------------

    def person_puts(self, *, with_key_id: bool = True, project_id: int | None = None) -> str | None:
        """A person stores a fresh dashboard key with PutSecretValue (no VersionStages): AWS
        moves AWSCURRENT to it and AWSPREVIOUS to the version that was current, mid-rotation or
        not. Returns the new version, or None where AWS refused (the key then stays unused in the
        dashboard: no version holds it, and it is not the rotator's)."""
        project = project_id or self.current_project()
        issued = self.fake.issue_key(project, "person key")
        self.trusted_key_ids.add(issued.id)  # a person's choice, not one the rotator must test
        extra = {"key_id": issued.id} if with_key_id else {}
        before = self.labels()
        try:
            out = self.sm.put_secret_value(
                SecretId=self.arn, SecretString=secret_json(issued.key, project, **extra)
            )
        except ClientError:
            return None
        self._excuse_unheld(before)
        return str(out["VersionId"])

    def move_to_another_project(self, *, with_key_id: bool = True) -> str | None:
        """A person moves the secret to another project of its organization: stores a key of
        that project, with that project_id. The rotated key's credential then no longer sees
        the old project's keys (Cekura answers a DELETE of one 404, as for a missing key)."""
        project = self.fake.create_project(f"moved-{uuid.uuid4().hex[:6]}", ORGANIZATION)
        return self.person_puts(with_key_id=with_key_id, project_id=project)

    def attach_label(self, label: str, version_id: str) -> bool:
        """An application attaches its own label to a version (moving it if it is elsewhere)."""
        holder = next((v for v, s in self.labels().items() if label in s), None)
        before = self.labels()
        try:
            self.sm.update_secret_version_stage(
                SecretId=self.arn,
                VersionStage=label,
                MoveToVersionId=version_id,
                **({"RemoveFromVersionId": holder} if holder else {}),
            )
        except ClientError:
            return False
        self.people_labels.add(label)
        self._excuse_unheld(before)
        pinned = next((v for v in self.versions() if v.id == version_id), None)
        if pinned is not None and pinned.api_key and not self.fake.is_live(pinned.api_key):
            key_id = self.fake.key_id(pinned.api_key)
            if key_id is not None:
                # A key revoked before the application pinned it: no label held it then (9).
                self.evidence.excused_key_ids.add(key_id)
        return True

    def remove_label(self, label: str) -> bool:
        """An application removes its label."""
        before = self.labels()
        holder = next((v for v, s in before.items() if label in s), None)
        if holder is None:
            return False
        try:
            self.sm.update_secret_version_stage(
                SecretId=self.arn, VersionStage=label, RemoveFromVersionId=holder
            )
        except ClientError:
            return False
        self._excuse_unheld(before)
        return True

    def fill_labels(
        self, spare: int, *, prefix: str = "APP_FILL_", beyond_reserved: bool = False
    ) -> int:
        """Application labels on AWSCURRENT's version until `spare` of the 20 are left (they pin
        no other key), or with `beyond_reserved`, `spare` beyond those a rotation may need (an
        application that leaves rotation its room). Returns how many it attached."""
        attached = 0
        for number in range(ledger.MAX_LABELS):
            labels = self.labels()
            in_use = {s for stages in labels.values() for s in stages}
            current = next((v for v, s in labels.items() if CURRENT in s), None)
            left = ledger.spare_labels(labels) if beyond_reserved else MAX_LABELS - len(in_use)
            if current is None or left <= spare:
                break
            label = f"{prefix}{number}"
            if label not in in_use and self.attach_label(label, current):
                attached += 1
        return attached

    def remove_labels(self, prefix: str) -> None:
        for label in sorted({s for stages in self.labels().values() for s in stages}):
            if label.startswith(prefix):
                self.remove_label(label)

    def change_kms_key(self) -> bool:
        """A person points the secret at another KMS key and disables the old one: only the
        versions labelled AWSCURRENT, AWSPENDING and AWSPREVIOUS stay readable."""
        try:
            self.model.change_kms_key(self.arn)
        except ClientError:
            return False
        return True

    def schedule_deletion(self) -> bool:
        try:
            self.sm.delete_secret(SecretId=self.arn, RecoveryWindowInDays=7)
        except ClientError:
            return False
        return True

    def restore(self) -> bool:
        try:
            self.sm.restore_secret(SecretId=self.arn)
        except ClientError:
            return False
        return True

    def deleted(self) -> bool:
        return self.sm.describe_secret(SecretId=self.arn).get("DeletedDate") is not None

    def rotate_inside_finish(
        self,
        token: str,
        *,
        steps: int = 1,
        started: Callable[[str, list[BaseException | None]], None] | None = None,
    ) -> None:
        """Armed: the moment finishSecret of `token` has moved AWSCURRENT (AWSPENDING then shares
        its version, and AWS accepts a new RotateSecret), a new rotation starts, and its first
        `steps` steps run before that finishSecret goes on. `started(token, outcomes)` is told."""

        def act(_: Mapping[str, Any]) -> None:
            try:
                new = self.start_rotation()
            except ClientError:
                return  # AWS refused it (a full label quota, a deleted secret)
            outcomes: list[BaseException | None] = []
            for step in STEPS[:steps]:
                outcomes.append(self.step(step, new))
                if outcomes[-1] is not None:
                    break
            if started is not None:
                started(new, outcomes)

        self.model.on_call(
            "UpdateSecretVersionStage",
            act,
            after=True,
            match=lambda p: p.get("VersionStage") == CURRENT and p.get("MoveToVersionId") == token,
        )

    def pending_cleaned_at_the_move(self, token: str) -> None:
        """Armed: Secrets Manager removes AWSPENDING itself the moment finishSecret of `token`
        has moved AWSCURRENT (the rotation is complete for AWS), while that finishSecret runs."""
        self.model.on_call(
            "UpdateSecretVersionStage",
            lambda _: self.model.remove_pending(self.arn, token),
            after=True,
            match=lambda p: p.get("VersionStage") == CURRENT and p.get("MoveToVersionId") == token,
        )

    def before_current_moves(self, token: str, act: Callable[[], object]) -> None:
        """Armed: `act` runs just before finishSecret of `token` moves AWSCURRENT."""

        self.model.on_call(
            "UpdateSecretVersionStage",
            lambda _: act(),
            match=lambda p: p.get("VersionStage") == CURRENT and p.get("MoveToVersionId") == token,
        )

    def _excuse_unheld(self, before: Mapping[str, tuple[str, ...]]) -> None:
        """A version that a person's act left without any label but the rotator's, and whose
        key no record names: its key is live by that person's doing (see `Evidence`)."""
        after = self.labels()
        recorded = _recorded_key_ids(self.fake, self.versions())
        for version in self.versions():
            was_held = any(not ledger.is_rotator_label(s) for s in before.get(version.id, ()))
            held = any(not ledger.is_rotator_label(s) for s in after.get(version.id, ()))
            key_id = self.fake.key_id(version.api_key) if version.api_key else None
            if was_held and not held and key_id is not None and key_id not in recorded:
                self.evidence.excused_key_ids.add(key_id)

    # -- checks ---------------------------------------------------------------------------------

    def strays(self) -> list[Any]:
        """Keys minted for this secret that no version holds, live (invariant 3)."""
        return invariants.strays_of_secret(self.fake, self.stem, self.versions())

    def believed_gone(self) -> set[int]:
        """Live keys the rotator logged as already gone: what an injected 404 told it (at most
        one key for each such 404)."""
        if not self.evidence.delete_lies:
            return set()
        live = {k.id for k in self.fake.all_keys() if not k.deleted}
        told = []
        for line in self.log_text.splitlines():
            if "Key was already gone" in line:
                key_id = json.loads(line).get("key_id")
                if key_id in live and key_id not in told:
                    told.append(key_id)
        return set(told[: self.evidence.delete_lies])

    def undecidable_debts(self) -> set[int]:
        """Keys the rotator cannot prove unheld without decrypting what it cannot: some labelled
        version holds a key it knows only by value (or cannot read at all), and nothing it can
        read tells that key apart from this one. Such a debt may stay recorded (invariant 8)."""
        everything = self.versions()
        readable = {v.id: self.model.readable(self.arn, v.id) for v in everything}
        # Keys whose value the rotator can read somewhere (so a value can be compared).
        known = {self.fake.key_id(v.api_key) for v in everything if v.api_key and readable[v.id]}
        names = {k.id: k.name for k in self.fake.all_keys()}
        undecidable = set()
        for key_id in {self.fake.key_id(v.api_key) for v in everything if v.api_key}:
            if key_id is None:
                continue
            tag = key_names.tag_of(names.get(key_id, ""), self.stem)
            minted_for = next((v.id for v in everything if tag and v.id.startswith(tag)), None)
            minted_at = self.model.created(self.arn, minted_for) if minted_for else None
            for held in (v for v in everything if v.held and v.api_key):
                if readable[held.id] and held.key_id is not None:
                    continue  # told apart by id
                if readable[held.id] and key_id in known:
                    continue  # told apart by value (the owed key's value can be read)
                held_at = self.model.created(self.arn, held.id)
                if minted_at and held_at and held_at < minted_at:
                    continue  # written before the key existed: cannot hold it
                undecidable.add(key_id)
                break
        return undecidable

    def sweep_can_be_safe(self) -> bool:
        """Whether a sweep could tell every labelled key by id: no version someone may read a
        key through is unreadable to the rotator (KMS) or holds a key without `key_id`."""
        return all(
            v.key_id is not None and self.model.readable(self.arn, v.id)
            for v in self.versions()
            if v.held and v.api_key
        )

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
        all_versions = self.versions()
        found = self.strays()
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
            *self.step_checks(),
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
            checks.append(
                lambda: invariants.grace_bound_of_secret(self.fake, self.stem, self.evidence)
            )
        invariants.verify(ledger, *checks)

    def settle(self, ledger: Ledger, *, deletion_allowed: bool) -> None:
        """Invariant 8: with every fault cleared, two more rotations pay every debt the policy
        owes (or, where Cekura refuses deletion, record it for the dashboard)."""
        self.clear_faults()
        # Scheduled rotations come days apart, long after a container forgets Cekura's refusals
        # (an hour): what one passing 403 put off is done now.
        self.rotator = self._rotator(self.policy)
        with self.calm():
            self.rotate()
            self.rotate()
        if self.policy == "off":
            return
        all_versions = self.versions()
        excused = self.evidence.excused_key_ids
        scope = None if self.admin_secret_arn else {self.current_project()}
        believed = self.believed_gone()
        # A stray may wait while the sweep cannot be safe, never once it can (invariant 3).
        left = [k for k in self.strays() if scope is None or k.project in scope]
        sweepable = deletion_allowed and self.sweep_can_be_safe()
        invariants.verify(
            ledger,
            lambda: invariants.no_strays_left(left) if sweepable else [],
            lambda: invariants.debts_settled(
                self.fake,
                all_versions,
                deletion_allowed=deletion_allowed,
                excused=excused | believed,
                scope=scope,
                log_text=self.log_text,
                undecidable=self.undecidable_debts(),
            ),
            lambda: invariants.labelled_keys_live(self.fake, all_versions, excused=excused),
        )


def _recorded_key_ids(fake: FakeCekura, all_versions: Iterable[invariants.Version]) -> set[int]:
    """Keys some rotator record names (by id, or by its version's value)."""
    return invariants.recorded_key_ids(fake, list(all_versions))


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
