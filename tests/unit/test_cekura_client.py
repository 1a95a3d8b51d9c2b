"""The Cekura client over real HTTP to the fake: retries, typed errors, limits."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from cekura_rotator.cekura import CekuraClient, Credential
from cekura_rotator.errors import (
    CekuraAuthError,
    CekuraForbiddenError,
    CekuraProtocolError,
    CekuraRateLimitedError,
    CekuraRequestError,
    CekuraUnavailableError,
    OrphanKeyError,
)
from infra.local.fake_cekura import FakeCekura, Fault


@pytest.fixture
def project(fake: FakeCekura) -> int:
    return fake.create_project(name="P", organization="Acme")


@pytest.fixture
def key(fake: FakeCekura, project: int) -> str:
    return fake.issue_key(project_id=project, name="bootstrap").key


def client(fake: FakeCekura, sleeps: list[float], retry_after_cap: float = 20.0) -> CekuraClient:
    return CekuraClient(base_url=fake.url, sleep=sleeps.append, retry_after_cap=retry_after_cap)


def routes(fake: FakeCekura, route: str) -> list[int]:
    return [r.status for r in fake.requests if r.route == route]


def test_create_returns_the_minted_key(fake: FakeCekura, project: int, key: str) -> None:
    minted = client(fake, []).create_key(key, name="rotator-t-1", project=project)
    assert fake.is_live(minted.key)
    assert (minted.name, minted.project, minted.id) == (
        "rotator-t-1",
        project,
        fake.key_id(minted.key),
    )


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_get_retries_transient_statuses(
    fake: FakeCekura, project: int, key: str, status: int
) -> None:
    fake.inject("validate", Fault(status=status, times=2))
    sleeps: list[float] = []
    client(fake, sleeps).validate(key, project_id=project)
    assert routes(fake, "validate") == [status, status, 200]
    assert len(sleeps) == 2


def test_retry_after_is_honoured_and_capped(fake: FakeCekura, project: int, key: str) -> None:
    fake.inject(
        "validate", Fault(status=429, retry_after="2"), Fault(status=429, retry_after="500")
    )
    sleeps: list[float] = []
    client(fake, sleeps, retry_after_cap=7.0).validate(key, project_id=project)
    assert sleeps == [2.0, 7.0]


def test_get_gives_up_after_bounded_attempts(fake: FakeCekura, project: int, key: str) -> None:
    fake.inject("validate", Fault(status=503, times=50))
    with pytest.raises(CekuraUnavailableError, match="503"):
        client(fake, []).validate(key, project_id=project)
    assert len(routes(fake, "validate")) == 5


def test_retries_never_sleep_past_the_deadline(fake: FakeCekura, project: int, key: str) -> None:
    # Given Cekura asks to come back in 30 s but the Lambda has 10 s left
    fake.inject("validate", Fault(status=429, retry_after="30", times=5))
    sleeps: list[float] = []
    with pytest.raises(CekuraRateLimitedError):
        client(fake, sleeps, retry_after_cap=60.0).validate(
            key, project_id=project, deadline=time.monotonic() + 10
        )
    # Then it did not wait at all: the wait would have outlived the invocation
    assert sleeps == []


def test_create_retries_429_but_not_5xx(fake: FakeCekura, project: int, key: str) -> None:
    fake.inject("create", Fault(status=429), Fault(status=502))
    with pytest.raises(CekuraUnavailableError, match="502"):
        client(fake, []).create_key(key, name="n", project=project)
    assert routes(fake, "create") == [429, 502]


def test_create_is_not_repeated_after_a_lost_answer(
    fake: FakeCekura, project: int, key: str
) -> None:
    # Given Cekura creates the key but the answer is lost
    fake.inject("create", Fault(lost_response=True))
    # When the client creates, Then it fails without a second attempt (which would mint twice)
    with pytest.raises(CekuraUnavailableError, match="not repeated"):
        client(fake, []).create_key(key, name="n", project=project)
    assert len(fake.live_keys(project)) == 2


def test_create_retries_a_refused_connection() -> None:
    # Given nothing listens on the port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps: list[float] = []
    c = CekuraClient(base_url=f"http://127.0.0.1:{port}", sleep=sleeps.append)
    with pytest.raises(CekuraUnavailableError, match="ConnectError"):
        c.create_key("ck_whatever_123", name="n", project=1)
    assert len(sleeps) == 4


def test_201_without_key_is_an_orphan_with_its_id(fake: FakeCekura, project: int, key: str) -> None:
    fake.inject("create", Fault(missing_key=True))
    with pytest.raises(OrphanKeyError) as caught:
        client(fake, []).create_key(key, name="n", project=project)
    assert caught.value.key_id in {k.id for k in fake.live_keys(project)}


@pytest.mark.parametrize(
    ("fault", "error", "text"),
    [
        (Fault(status=401), CekuraAuthError, "401"),
        (Fault(status=403), CekuraForbiddenError, "403"),
        (
            Fault(
                status=400,
                body=b'{"name": ["This field is required."]}',
                content_type="application/json",
            ),
            CekuraRequestError,
            "name: This field",
        ),
        (
            Fault(body=b"{not json", content_type="application/json"),
            CekuraProtocolError,
            "not valid JSON",
        ),
        (Fault(content_type="text/html"), CekuraProtocolError, "content type"),
        (Fault(oversize=2_000_000), CekuraProtocolError, "exceeds"),
        (Fault(key_value=123), OrphanKeyError, "no usable 'key'"),
    ],
)
def test_bad_answers_map_to_typed_errors(
    fake: FakeCekura, project: int, key: str, fault: Fault, error: type[Exception], text: str
) -> None:
    fake.inject("create", fault)
    with pytest.raises(error, match=text) as caught:
        client(fake, []).create_key(key, name="n", project=project)
    assert key not in str(caught.value)


def test_detail_text_is_scrubbed_of_the_key_sent(fake: FakeCekura, project: int, key: str) -> None:
    body = ('{"detail": "bad key ' + key + '"}').encode()
    fake.inject("validate", Fault(status=401, body=body, content_type="application/json"))
    with pytest.raises(CekuraAuthError) as caught:
        client(fake, []).validate(key, project_id=project)
    assert key not in str(caught.value)
    assert "bad key ***" in str(caught.value)


def test_redirects_are_not_followed() -> None:
    # Given a server that redirects elsewhere (a transport stub: the fake never redirects)
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url.host))
        return httpx.Response(302, headers={"Location": "https://evil.example/steal"})

    http = httpx.Client(transport=httpx.MockTransport(answer), follow_redirects=False)
    c = CekuraClient(base_url="https://api.cekura.ai", http_client=http, sleep=lambda _: None)
    with pytest.raises(CekuraProtocolError, match="redirect"):
        c.validate("ck_secret_value_1", project_id=1)
    assert seen == ["api.cekura.ai"]


def test_delete_404_is_not_an_error_and_spec_mode_refuses(
    fake: FakeCekura, project: int, key: str
) -> None:
    c = client(fake, [])
    fake.mode = "permissive"
    assert c.delete_key(key, 99999) is False
    fake.mode = "spec"
    with pytest.raises(CekuraForbiddenError):
        c.delete_key(key, 1)


def test_default_client_verifies_tls_and_ignores_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")
    c = CekuraClient(base_url="https://api.cekura.ai")
    http = c._http
    assert http.follow_redirects is False
    assert http._trust_env is False
    pool = http._transport._pool  # type: ignore[attr-defined]
    assert pool._ssl_context.verify_mode.name == "CERT_REQUIRED"
    assert http._mounts == {}


def test_throttling_is_retried_past_max_attempts_until_the_deadline(
    fake: FakeCekura, project: int, key: str
) -> None:
    # Given a fleet-wide throttle longer than the attempt count, and time left in the Lambda
    fake.inject("create", Fault(status=429, retry_after="1", times=12))
    sleeps: list[float] = []
    # When a key is created, Then the client waits its turn and succeeds
    deadline = time.monotonic() + 60
    minted = client(fake, sleeps).create_key(key, name="n", project=project, deadline=deadline)
    assert routes(fake, "create") == [429] * 12 + [201]
    assert sleeps == [1.0] * 12
    assert fake.is_live(minted.key)


def test_throttling_stops_at_the_deadline_even_when_sleep_is_instant(
    fake: FakeCekura, project: int, key: str
) -> None:
    fake.inject("validate", Fault(status=429, retry_after="5", times=100))
    sleeps: list[float] = []
    with pytest.raises(CekuraRateLimitedError):
        client(fake, sleeps).validate(key, project_id=project, deadline=time.monotonic() + 30)
    assert len(sleeps) == 5


def test_without_a_deadline_throttling_counts_as_attempts(
    fake: FakeCekura, project: int, key: str
) -> None:
    fake.inject("validate", Fault(status=429, retry_after="1", times=100))
    with pytest.raises(CekuraRateLimitedError):
        client(fake, []).validate(key, project_id=project)
    assert len(routes(fake, "validate")) == 5


def test_sees_project_answers_for_keys_and_sessions_alike(fake: FakeCekura, project: int) -> None:
    # Given a project key, a dashboard session of the same organisation, and another project
    other = fake.create_project(name="Q", organization="Other")
    key = fake.issue_key(project_id=project, name="k").key
    session = fake.issue_session(project)
    cekura = client(fake, [])
    # When each is asked whether it sees a project
    # Then Cekura's one filtered listing says so, for a key and for a session
    assert cekura.sees_project(key, project_id=project)
    assert not cekura.sees_project(key, project_id=other)
    assert cekura.sees_project(Credential.bearer(session), project_id=project)
    assert [r.query.get("project_id") for r in fake.requests if r.route == "projects"] == [
        str(project),
        str(other),
        str(project),
    ]
    # And a credential Cekura does not know is a refusal, not a "no"
    with pytest.raises(CekuraAuthError):
        cekura.sees_project("ck_fake_unknown_key_000", project_id=project)
