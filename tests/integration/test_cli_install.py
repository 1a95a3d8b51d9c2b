"""`pip install .` from the repository root, into a clean venv, gives a working `cekura-rotator`.

The checkout's packaging files and the two packages are copied to a temporary directory first:
pip builds in the source tree, and its `build/` and `.egg-info` must not land in the checkout
other people work in. The venv is built from scratch (no system site-packages); pip fetches
setuptools and the runtime dependencies from the package index, as an operator's pip would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from cekura_rotator import __version__
from cekura_rotator.secret_value import fingerprint
from infra.local.fake_cekura import KEY_PREFIX, Fault
from infra.local.stack import (
    DUMMY_CREDENTIALS,
    FUNCTION_ARN,
    LocalStack,
)
from tests.integration.cli_harness import (
    Seeded,
    assert_no_key_material,
    dead_port,
    kill,
    seed,
)

# One install per run: every test here shares the module's venv, so they share a worker.
pytestmark = pytest.mark.xdist_group("cli-install")

REPO_ROOT = Path(__file__).resolve().parents[2]
# What `pip install .` reads: the packaging metadata, the files it names, the two packages.
SOURCES = ("pyproject.toml", "requirements.txt", "requirements-aws.txt", "README.md", "LICENSE")
PACKAGES = ("lambda/cekura_rotator", "cli/cekura_rotator_cli")


@dataclass(frozen=True)
class Installed:
    bin_dir: Path

    def run(self, *argv: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "cekura-rotator"), *argv],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    root = tmp_path_factory.mktemp("install")
    source = root / "checkout"
    for name in SOURCES:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO_ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        env={**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"pip install failed:\n{result.stdout}\n{result.stderr}"
    return Installed(venv / "bin")


def _clean_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH: the installed script must find everything in its own venv."""
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    return {**env, **DUMMY_CREDENTIALS, **extra}


def _requirements(lines: list[str]) -> set[tuple[str, SpecifierSet]]:
    return {(r.name, r.specifier) for r in map(Requirement, lines)}


@pytest.fixture
def stand(stack: LocalStack) -> LocalStack:
    """The module's moto server and fake Cekura, with the in-process function's environment
    set for this test (rotations started by the installed command run the real steps)."""
    return stack


@pytest.mark.slow
def test_installed_script_answers_help_and_version(installed: Installed, tmp_path: Path) -> None:
    # Given the CLI installed with pip into a clean venv
    # When its help and version are asked for, from a directory outside the checkout
    help_text = installed.run("--help", env=_clean_env(), cwd=tmp_path)
    version = installed.run("--version", env=_clean_env(), cwd=tmp_path)
    # Then both answer, with every command and the one version
    assert help_text.returncode == 0, help_text.stderr
    for command in ("status", "rotate", "check", "bootstrap", "revocations"):
        assert command in help_text.stdout
    assert version.stdout.strip() == f"cekura-rotator {__version__}"


@pytest.mark.slow
def test_installed_metadata_reads_the_version_and_the_lambda_manifest(
    installed: Installed, tmp_path: Path
) -> None:
    # Given the installed distribution
    probe = (
        "import importlib.metadata as m, json; d = m.distribution('cekura-rotator'); "
        "print(json.dumps({'version': d.version, 'requires': d.requires, "
        "'files': [str(f) for f in d.files]}))"
    )
    # When its metadata is read in the venv
    result = subprocess.run(
        [str(installed.bin_dir / "python"), "-c", probe],
        capture_output=True,
        text=True,
        env=_clean_env(),
        cwd=tmp_path,
        timeout=60,
        check=True,
    )
    metadata = json.loads(result.stdout)
    manifest = [
        line.strip()
        for name in ("requirements.txt", "requirements-aws.txt")
        for line in (REPO_ROOT / name).read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    # Then the version is __version__, the dependencies are the Lambda's requirements.txt and the
    # AWS SDK (which Lambda's runtime provides to the function), and both packages
    # (and nothing else of the checkout) were installed
    assert metadata["version"] == __version__
    assert _requirements(metadata["requires"]) == _requirements(manifest)
    tops = {f.split("/", 1)[0] for f in metadata["files"] if f.endswith(".py")}
    assert tops == {"cekura_rotator", "cekura_rotator_cli"}


@pytest.mark.slow
def test_installed_script_runs_status_against_moto_and_the_fake(
    installed: Installed, stand: LocalStack, tmp_path: Path
) -> None:
    # Given a bootstrapped secret on moto server
    seeded = seed(stand)

    # When the installed script asks for its status, as JSON
    result = installed.run(
        "--endpoint-url", stand.moto_url,
        "status", "--secret-id", seeded.name, "--output", "json",
        env=_clean_env(CEKURA_API_URL=stand.fake.url),
        cwd=tmp_path,
    )  # fmt: skip

    # Then it reads the secret through the installed packages and shows the key's fingerprint
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["secret"]["arn"] == seeded.arn
    fingerprints = [v["fingerprint"] for v in report["versions"] if "AWSCURRENT" in v["labels"]]
    assert fingerprints == [fingerprint(seeded.key.key)]
    assert_no_key_material(stand, result.stdout, result.stderr)


@pytest.mark.slow
def test_installed_script_reports_a_missing_secret_in_one_line(
    installed: Installed, stand: LocalStack, tmp_path: Path
) -> None:
    # Given a secret name that does not exist
    missing = f"cekura/missing-{uuid.uuid4().hex[:6]}"
    # When the installed script is asked about it
    result = installed.run(
        "--endpoint-url", stand.moto_url, "rotate", "--secret-id", missing,
        env=_clean_env(), cwd=tmp_path,
    )  # fmt: skip
    # Then it exits 2 with one line, no traceback
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert f"cekura-rotator rotate: secret {missing!r}:" in result.stderr


# -- the installed command at 3 a.m.: closed pipes, a terminal gone, Ctrl-C --------------------


def _bash(installed: Installed, script: str, **env: str) -> subprocess.CompletedProcess[str]:
    """A shell pipeline around the installed command (`$CLI`), as an operator would type it."""
    return subprocess.run(
        ["bash", "-c", script],
        capture_output=True,
        text=True,
        env=_clean_env(CLI=str(installed.bin_dir / "cekura-rotator"), **env),
        timeout=120,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.parametrize("reader", ["head -1", "true"])
def test_bootstrap_into_a_closed_pipe_still_attaches_rotation(
    installed: Installed, stand: LocalStack, reader: str
) -> None:
    # Given a key, and bootstrap's stdout piped into a reader that stops reading (`head -1`
    # after one line, `true` at once)
    project = stand.fake.create_project(f"pipe-{uuid.uuid4().hex[:6]}", organization="Acme")
    issued = stand.fake.issue_key(project, name="dashboard")
    name = f"cekura/{uuid.uuid4().hex[:8]}"
    script = (
        'printf "%s\\n" "$KEY" | "$CLI" --endpoint-url "$MOTO" bootstrap --secret-name "$NAME" '
        f'--project-id {project} --function-arn "$FUNCTION" --key-id {issued.id} | {reader}; '
        'echo "exit=${PIPESTATUS[1]}" >&2'
    )

    # When it runs
    proc = _bash(installed, script, KEY=issued.key, MOTO=stand.moto_url, NAME=name,
                 FUNCTION=FUNCTION_ARN, CEKURA_API_URL=stand.fake.url)  # fmt: skip

    # Then both changes were made (the secret, then rotation attached), the lost output did not
    # turn the success into a failure, and nothing was printed about the pipe
    assert "exit=0" in proc.stderr, proc.stderr
    described = stand.client().describe_secret(SecretId=name)
    assert described["RotationEnabled"] is True
    assert described["RotationLambdaARN"] == FUNCTION_ARN
    assert "Traceback" not in proc.stderr
    assert "BrokenPipe" not in proc.stderr
    assert_no_key_material(stand, proc.stdout, proc.stderr)


@pytest.mark.slow
def test_status_into_head_keeps_its_exit_code(installed: Installed, stand: LocalStack) -> None:
    # Given a healthy secret and one whose key was deleted in the dashboard
    healthy = seed(stand)
    dead = seed(stand)
    kill(stand, dead)
    script = (
        '"$CLI" --endpoint-url "$MOTO" status --secret-id "$SECRET" | head -3; '
        'echo "exit=${PIPESTATUS[0]}" >&2'
    )

    # When each status is read through `head -3`
    ok = _bash(installed, script, MOTO=stand.moto_url, SECRET=healthy.arn,
               CEKURA_API_URL=stand.fake.url)  # fmt: skip
    bad = _bash(installed, script, MOTO=stand.moto_url, SECRET=dead.arn,
                CEKURA_API_URL=stand.fake.url)  # fmt: skip

    # Then the healthy one exits 0 and the dead key's 1: the closed pipe changes neither
    assert ok.stdout.splitlines()[0] == f"Secret             {healthy.name}"
    assert len(ok.stdout.splitlines()) == 3
    assert "exit=0" in ok.stderr, ok.stderr
    assert "exit=1" in bad.stderr, bad.stderr
    assert "Cekura does not accept the current key" in bad.stderr
    for proc in (ok, bad):
        assert "Traceback" not in proc.stderr
        assert "BrokenPipe" not in proc.stderr


class _Lines:
    """A process's stream read line by line in the background."""

    def __init__(self, stream: IO[str]):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert time.monotonic() < deadline, f"never saw {text!r} in {self.lines}"
            time.sleep(0.05)

    def text(self) -> str:
        self._thread.join(timeout=30)
        return "".join(self.lines)


def _stalled_rotation(
    installed: Installed, stand: LocalStack, *argv: str
) -> tuple[Seeded, subprocess.Popen[str], _Lines, _Lines]:
    """`rotate --wait --output json` on a rotation whose createSecret fails, started as a
    process, with its stdout and stderr read in the background."""
    seeded = seed(stand)
    stand.fake.inject("create", Fault(status=500, times=5))
    proc = subprocess.Popen(
        [str(installed.bin_dir / "cekura-rotator"), "--endpoint-url", stand.moto_url, "rotate",
         "--secret-id", seeded.arn, "--wait", "--poll-interval", "0.2", "--output", "json",
         *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_clean_env(CEKURA_API_URL=stand.fake.url),
    )  # fmt: skip
    assert proc.stdout is not None
    assert proc.stderr is not None
    return seeded, proc, _Lines(proc.stdout), _Lines(proc.stderr)


def _signal_once_started(
    stand: LocalStack, proc: subprocess.Popen[str], err: _Lines, signum: signal.Signals
) -> None:
    """Send `signum` once the rotation has started and wait for the command to end; whatever
    happens, no process and no fault are left behind for the next test."""
    try:
        err.wait_for("started: new version")
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        proc.kill()
        stand.fake.clear_faults()


@pytest.mark.slow
def test_ctrl_c_says_the_rotation_goes_on_and_json_still_gets_a_document(
    installed: Installed, stand: LocalStack
) -> None:
    # Given `rotate --wait --output json` following a rotation that will not finish
    seeded, proc, out, err = _stalled_rotation(installed, stand, "--timeout", "120")

    # When the operator presses Ctrl-C
    _signal_once_started(stand, proc, err, signal.SIGINT)
    errors = err.text()

    # Then it exits 130; stderr says the rotation goes on in Secrets Manager and how to follow
    # it (with the options in use); stdout still holds one JSON document saying so
    assert proc.returncode == 130, errors
    pending = stand.client().describe_secret(SecretId=seeded.arn)["VersionIdsToStages"]
    token = next(v for v, s in pending.items() if "AWSPENDING" in s)
    assert f"interrupted: the rotation goes on in Secrets Manager (new version {token})" in errors
    assert (
        f"cekura-rotator --endpoint-url {stand.moto_url} status --secret-id {seeded.arn}" in errors
    )
    document = json.loads(out.text())
    assert document["interrupted"] is True
    assert document["exit_code"] == 130
    assert (document["secret_arn"], document["version_id"]) == (seeded.arn, token)
    assert "Traceback" not in errors


@pytest.mark.slow
def test_a_terminal_gone_does_not_stop_the_command(installed: Installed, stand: LocalStack) -> None:
    # Given `rotate --wait` following a rotation that will not finish, with a short timeout
    _, proc, out, err = _stalled_rotation(installed, stand, "--timeout", "3")

    # When its terminal goes away (SIGHUP, as when an SSH session drops)
    _signal_once_started(stand, proc, err, signal.SIGHUP)

    # Then it is not killed: it finishes its wait and exits with the code its work earned
    # (1: the rotation failed); its output, sent to pipes rather than the terminal, goes on
    assert proc.returncode == 1
    assert "rotation failed: AWSCURRENT did not move within 3s" in err.text()
    assert json.loads(out.text())["error"]["exit_code"] == 1


@pytest.mark.slow
def test_cekura_unreachable_exits_3_and_names_the_host(
    installed: Installed, stand: LocalStack, tmp_path: Path
) -> None:
    # Given a secret, and a Cekura URL nobody listens on
    seeded = seed(stand)
    url = f"http://127.0.0.1:{dead_port()}"

    # When status runs
    result = installed.run(
        "--endpoint-url", stand.moto_url, "status", "--secret-id", seeded.arn,
        "--cekura-url", url, env=_clean_env(), cwd=tmp_path,
    )  # fmt: skip

    # Then it prints what it knows, and exits 3 naming the host it could not reach
    assert result.returncode == 3
    assert f"Secret             {seeded.name}" in result.stdout
    assert f"(Cekura API at {url})" in result.stderr
    assert "could not be reached" in result.stderr


@pytest.mark.slow
def test_a_key_pasted_as_an_option_is_named_never_shown(
    installed: Installed, tmp_path: Path
) -> None:
    # Given a key pasted after an option that does not exist
    key = KEY_PREFIX + uuid.uuid4().hex
    # When the installed command parses it
    result = installed.run("status", "--secret-id", "x", "--api-key", key, env=_clean_env(),
                           cwd=tmp_path)  # fmt: skip
    # Then the option is named, the value is not
    assert result.returncode == 2
    assert "unrecognized arguments: --api-key" in result.stderr
    assert key not in result.stdout + result.stderr
