"""Security checks: where the key may travel, TLS, size caps, and redaction of tracebacks."""

from __future__ import annotations

import dataclasses
import datetime
import inspect
import ipaddress
import ssl
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cekura_rotator import handler
from cekura_rotator.cekura import AUTH_HEADER, MAX_BODY_BYTES, CekuraClient
from cekura_rotator.config import Config
from cekura_rotator.errors import CekuraProtocolError, CekuraUnavailableError
from cekura_rotator.observability import MASK, logger, redactor
from cekura_rotator.steps import Step
from infra.local.fake_cekura import FakeCekura, Fault
from infra.local.lambda_bridge import FakeLambdaContext
from tests.conftest import LogCapture
from tests.reliability import invariants
from tests.reliability.conftest import Ledger
from tests.reliability.harness import Rig

# -- the key goes to the configured host and nowhere else -------------------------------------


class _RedirectEverything(httpx.BaseTransport):
    """Answers every request to the configured host with a redirect to `elsewhere` (which a
    real server cannot be made to do on demand: the one stand-in of this module)."""

    def __init__(self, inner: httpx.BaseTransport, elsewhere: str):
        self.inner = inner
        self.elsewhere = elsewhere
        self.hosts: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.hosts.append(f"{request.url.host}:{request.url.port}")
        if not str(request.url).startswith(self.elsewhere):
            location = self.elsewhere + request.url.raw_path.decode()
            return httpx.Response(307, headers={"Location": location}, request=request)
        return self.inner.handle_request(request)


@pytest.fixture
def elsewhere() -> Iterator[FakeCekura]:
    """Another Cekura-like server: the place a redirect points at."""
    with FakeCekura(mode="permissive") as server:
        yield server


@pytest.mark.parametrize("operation", ["create", "validate", "list", "delete"])
def test_redirects_are_not_followed(
    operation: str, fake: FakeCekura, elsewhere: FakeCekura, ledger: Ledger
) -> None:
    # Given the client as the Lambda builds it, and a server that redirects every request
    project = fake.create_project()
    key = fake.issue_key(project).key
    client = CekuraClient.from_config(Config(cekura_api_url=fake.url))
    transport = _RedirectEverything(client._http._transport, elsewhere.url)
    client._http._transport = transport
    calls: dict[str, Any] = {
        "create": lambda: client.create_key(key, name="n", project=project),
        "validate": lambda: client.validate(key, project_id=project),
        "list": lambda: client.list_keys(key),
        "delete": lambda: client.delete_key(key, 1),
    }
    # When the client calls Cekura
    with pytest.raises(CekuraProtocolError, match="redirect") as caught:
        calls[operation]()
    ledger.security_checks += 1
    # Then it refuses the redirect: the other host got nothing, and the key is not in the error
    assert elsewhere.requests == []
    assert transport.hosts == [f"127.0.0.1:{fake.port}"]
    assert key not in str(caught.value)
    client.close()


def test_the_fakes_own_redirect_is_refused(rig: Rig, ledger: Ledger) -> None:
    # Given a rotation in progress
    h = rig.harness()
    token = h.start_rotation()
    # When Cekura answers key creation with a redirect
    h.inject("create", Fault(status=302))
    error = h.step(Step.CREATE, token)
    ledger.security_checks += 1
    # Then the step fails with a protocol error and nothing was minted
    assert isinstance(error, CekuraProtocolError)
    assert "redirect" in str(error)
    assert [k.name for k in h.fake.live_keys(h.project_id)] == ["bootstrap"]


def test_keys_travel_only_in_the_header_to_the_configured_host(rig: Rig, ledger: Ledger) -> None:
    # Given every request the rotator's Cekura client sends, recorded as it leaves
    sent: list[httpx.Request] = []
    rig.cekura._http.event_hooks["request"].append(sent.append)
    h = rig.harness(mode="permissive")
    # When a few rotations run (create, validate, delete, list: every call it makes)
    for _ in range(3):
        h.rotate()
    ledger.security_checks += 1
    # Then every request went to the configured host, carried a key only in its header ...
    assert {r.method for r in sent} == {"POST", "GET", "DELETE"}
    assert {(r.url.scheme, r.url.host, r.url.port) for r in sent} == {
        ("http", "127.0.0.1", h.fake.port)
    }
    for request in sent:
        assert request.headers[AUTH_HEADER] in h.fake.minted_secrets()
        outside = str(request.url) + request.content.decode()
        assert invariants.key_material([outside], h.fake.minted_secrets()) == []
    # ... and the fake saw the same requests, and no others
    assert len(h.fake.requests) == len(sent)


# -- TLS verification cannot be turned off ----------------------------------------------------

_TLS_OFF_ATTEMPTS = {
    "CEKURA_VERIFY": "false",
    "CEKURA_TLS_VERIFY": "0",
    "CEKURA_INSECURE": "1",
    "CEKURA_SSL_VERIFY": "no",
    "PYTHONHTTPSVERIFY": "0",
    "SSL_CERT_FILE": "/dev/null",
    "SSL_CERT_DIR": "/nonexistent",
    "REQUESTS_CA_BUNDLE": "",
    "CURL_CA_BUNDLE": "",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "ALL_PROXY": "http://127.0.0.1:9",
}


def _ssl_context(client: CekuraClient) -> ssl.SSLContext:
    pool = client._http._transport._pool  # type: ignore[attr-defined]
    context: ssl.SSLContext = pool._ssl_context
    return context


def test_tls_verification_cannot_be_turned_off(
    monkeypatch: pytest.MonkeyPatch, ledger: Ledger
) -> None:
    # Given every variable anyone might set to turn TLS checks off or to divert traffic
    baseline = Config.from_env({})
    for name, value in _TLS_OFF_ATTEMPTS.items():
        monkeypatch.setenv(name, value)
    # When the configuration and the client are built as the Lambda builds them
    config = Config.from_env(dict(_TLS_OFF_ATTEMPTS))
    client = CekuraClient.from_config(config)
    ledger.security_checks += 1
    # Then the configuration has no such knob and ignored them ...
    assert config == baseline
    knobs = [f.name for f in dataclasses.fields(Config)]
    assert not [k for k in knobs if any(w in k for w in ("verify", "tls", "ssl", "insecure"))]
    assert "verify" not in inspect.signature(CekuraClient).parameters
    # ... and the client verifies certificates and host names, with no proxy from the env
    context = _ssl_context(client)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert context.get_ca_certs() or context.cert_store_stats()["x509_ca"] > 0
    assert client._http._mounts == {}
    assert client._http.follow_redirects is False
    client.close()


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str] = []  # noqa: RUF012  # one server per test, reset before use

    def do_GET(self) -> None:
        _Recorder.seen.append(self.headers.get(AUTH_HEADER, ""))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent."""


class _QuietHTTPServer(HTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """A refused handshake is the point of the test, not noise for stderr."""


def test_an_untrusted_certificate_gets_no_key(ledger: Ledger) -> None:
    # Given an https server with a self-signed certificate for 127.0.0.1
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = _self_signed(Path(tmp))
        server = _QuietHTTPServer(("127.0.0.1", 0), _Recorder)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01})
    thread.start()
    _Recorder.seen = []
    client = CekuraClient(base_url=f"https://127.0.0.1:{server.server_port}", sleep=lambda _: None)
    try:
        # When the client validates a key there
        with pytest.raises(CekuraUnavailableError) as caught:
            client.validate("ck_fake_never_sent_anywhere", project_id=1)
    finally:
        client.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    ledger.security_checks += 1
    # Then the handshake failed and no request, so no key, ever reached the server
    assert _Recorder.seen == []
    assert "ck_fake_never_sent_anywhere" not in str(caught.value)


# -- response bodies are size-capped -----------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "fault"),
    [
        ("create", Fault(status=201, oversize=MAX_BODY_BYTES + 1)),
        ("validate", Fault(oversize=MAX_BODY_BYTES + 1)),
        ("list", Fault(oversize=MAX_BODY_BYTES + 1)),
        ("delete", Fault(status=200, oversize=MAX_BODY_BYTES + 1)),
    ],
    ids=["create", "validate", "list", "delete"],
)
def test_response_bodies_are_capped(
    route: str, fault: Fault, fake: FakeCekura, ledger: Ledger
) -> None:
    # Given Cekura (API keys allowed everywhere) answering with one byte over the cap
    fake.mode = "permissive"
    project = fake.create_project()
    key = fake.issue_key(project).key
    client = CekuraClient(base_url=fake.url, sleep=lambda _: None)
    calls: dict[str, Any] = {
        "create": lambda: client.create_key(key, name="n", project=project),
        "validate": lambda: client.validate(key, project_id=project),
        "list": lambda: client.list_keys(key),
        "delete": lambda: client.delete_key(key, 1),
    }
    fake.inject(route, fault)  # type: ignore[arg-type]
    # When the client calls it
    with pytest.raises(CekuraProtocolError, match="exceeds"):
        calls[route]()
    ledger.security_checks += 1
    # Then the answer was refused; one at the cap is still read
    fake.inject("validate", Fault(oversize=MAX_BODY_BYTES))
    client.validate(key, project_id=project)
    client.close()


# -- redaction covers exceptions logged with tracebacks ---------------------------------------


def test_tracebacks_are_redacted(
    fake: FakeCekura, logs: LogCapture, capfd: pytest.CaptureFixture[str], ledger: Ledger
) -> None:
    # Given a key the rotator has seen
    key = fake.issue_key(fake.create_project()).key
    redactor.watch(key)
    # When an exception whose text, cause and notes hold it is logged with its traceback
    try:
        try:
            raise ValueError(f"cause mentions {key}")
        except ValueError as cause:
            error = RuntimeError(f"boom {key!r}")
            error.add_note(f"note {key}")
            raise error from cause
    except RuntimeError:
        logger.exception("Something failed", detail=f"field {key}", api_key="unwatched-value-1")
    out, err = capfd.readouterr()
    ledger.security_checks += 1
    # Then every copy of the record (the test capture and Lambda's stdout) is masked ...
    line = next(line for line in logs.lines if "Something failed" in line)
    for part in ("Traceback", "RuntimeError", "ValueError"):
        assert part in line
    assert MASK in line
    assert "unwatched-value-1" not in line  # a secret-named field is masked whatever it holds
    assert invariants.key_material([*logs.lines, out, err], [key]) == []


def test_handler_redacts_an_unexpected_exception(
    fake: FakeCekura,
    logs: LogCapture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    ledger: Ledger,
) -> None:
    # Given a step that fails with an unexpected exception quoting a key the rotator has seen
    key = fake.issue_key(fake.create_project()).key
    redactor.watch(key)

    class Exploding:
        def run(self, *_: Any, **__: Any) -> str:
            raise KeyError(f"unexpected {key}")

    monkeypatch.setattr(handler, "rotator", Exploding)
    event = {"Step": "createSecret", "SecretId": "s", "ClientRequestToken": "t" * 36}
    # When the handler runs it (and flushes its metrics)
    with pytest.raises(KeyError):
        handler.lambda_handler(event, FakeLambdaContext())
    out, err = capfd.readouterr()
    ledger.security_checks += 1
    # Then the logged traceback is masked, and the metrics say the step failed
    assert any("Rotation step failed unexpectedly" in line for line in logs.lines)
    assert invariants.key_material([*logs.lines, out, err], [key]) == []
    assert '"StepFailed"' in out
