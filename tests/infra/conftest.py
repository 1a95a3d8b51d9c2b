"""Fixtures for the SAM template checks.

`sam_build` builds the function once per test session (per xdist worker). Tests that use it must
carry `@pytest.mark.xdist_group("sam")` so that, under `--dist loadgroup`, they share one worker
and one build instead of each worker building its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
SAMCONFIG_PATH = REPO_ROOT / "infra" / "samconfig.toml"
FUNCTION_ID = "RotatorFunction"
NO_VALUE = {"Ref": "AWS::NoValue"}


class _CfnLoader(yaml.SafeLoader):  # type: ignore[misc, unused-ignore]
    """SafeLoader that turns CloudFormation short-form tags into their JSON long form."""


def _construct_intrinsic(loader: Any, tag_suffix: str, node: Any) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: Path = TEMPLATE_PATH) -> dict[str, Any]:
    loaded = yaml.load(path.read_text(encoding="utf-8"), Loader=_CfnLoader)  # noqa: S506
    assert isinstance(loaded, dict), f"{path} is not a YAML mapping"
    return loaded


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


def _evaluate(expr: Any, conditions: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    """Evaluates the intrinsic functions CloudFormation allows inside Conditions."""
    if isinstance(expr, str):
        return expr
    if isinstance(expr, dict) and len(expr) == 1:
        ((fn, args),) = expr.items()
        if fn == "Ref":
            return params[args]
        if fn == "Condition":
            return _evaluate(conditions[args], conditions, params)
        if fn == "Fn::Equals":
            left, right = (_evaluate(arg, conditions, params) for arg in args)
            return left == right
        if fn == "Fn::Not":
            return not _evaluate(args[0], conditions, params)
        if fn == "Fn::And":
            return all(_evaluate(arg, conditions, params) for arg in args)
        if fn == "Fn::Or":
            return any(_evaluate(arg, conditions, params) for arg in args)
        if fn == "Fn::Join":
            separator, items = args
            values = _evaluate(items, conditions, params)
            return separator.join(str(_evaluate(v, conditions, params)) for v in values)
    if isinstance(expr, list):
        return [_evaluate(item, conditions, params) for item in expr]
    raise AssertionError(f"condition evaluator does not understand {expr!r}")


@dataclass(frozen=True)
class Deployment:
    """The template as CloudFormation would see it for one set of parameter values."""

    template: dict[str, Any]
    params: dict[str, Any]

    def condition(self, name: str) -> bool:
        conditions = self.template["Conditions"]
        return bool(_evaluate(conditions[name], conditions, self.params))

    def resolve(self, value: Any) -> Any:
        """Picks the Fn::If branch each condition selects and drops AWS::NoValue."""
        if isinstance(value, dict):
            if set(value) == {"Fn::If"}:
                name, when_true, when_false = value["Fn::If"]
                return self.resolve(when_true if self.condition(name) else when_false)
            out = {}
            for key, item in value.items():
                resolved = self.resolve(item)
                if resolved != NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(value, list):
            return [r for r in (self.resolve(item) for item in value) if r != NO_VALUE]
        return value

    def resources(self) -> dict[str, dict[str, Any]]:
        return {
            logical_id: self.resolve(resource)
            for logical_id, resource in self.template["Resources"].items()
            if "Condition" not in resource or self.condition(resource["Condition"])
        }

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {
            name: output
            for name, output in self.template["Outputs"].items()
            if "Condition" not in output or self.condition(output["Condition"])
        }


def deployment(template: dict[str, Any], **overrides: str) -> Deployment:
    params: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        raw = str(overrides.pop(name, spec.get("Default", "")))
        params[name] = raw.split(",") if spec["Type"] == "CommaDelimitedList" else raw
    assert not overrides, f"unknown parameters: {sorted(overrides)}"
    return Deployment(template=template, params=params)


@dataclass(frozen=True)
class Tools:
    bin_dir: Path

    def run(self, tool: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / tool), *args],
            cwd=REPO_ROOT,
            env=tool_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def tool_env(extra_path: Sequence[Path] = ()) -> dict[str, str]:
    env = dict(os.environ)
    # sam validate --lint and cfn-lint need a region to resolve the spec, never credentials.
    env["AWS_DEFAULT_REGION"] = "us-east-1"
    env["SAM_CLI_TELEMETRY"] = "0"
    env["PATH"] = os.pathsep.join([*(str(p) for p in extra_path), env.get("PATH", "")])
    return env


@pytest.fixture(scope="session")
def tools() -> Tools:
    candidates = [Path(os.environ["TOOLS_BIN"])] if os.environ.get("TOOLS_BIN") else []
    candidates.append(REPO_ROOT / ".venv-tools" / "bin")
    for candidate in candidates:
        if candidate.is_dir():
            return Tools(bin_dir=candidate)
    pytest.skip(
        "infrastructure tools not installed: neither $TOOLS_BIN nor .venv-tools/bin exists "
        "(run `make setup`)"
    )


@pytest.fixture(scope="session")
def runtime_python() -> Path:
    """The interpreter matching the Lambda runtime (python3.13), which sam build insists on."""
    found = subprocess.run(
        [str(REPO_ROOT / "scripts" / "find-python.sh"), "3.13", "--exact"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        pytest.skip(f"python3.13 not found, sam build cannot run: {found.stderr.strip()}")
    return Path(found.stdout.strip())


@dataclass(frozen=True)
class SamBuild:
    artifact_dir: Path
    """Unzipped contents of the function package: put it on PYTHONPATH to import the handler."""
    template: Path
    seconds: float


@pytest.fixture(scope="session")
def sam_build(
    tools: Tools, runtime_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SamBuild]:
    build_dir = tmp_path_factory.mktemp("sam") / "build"
    # Run from the repo root with the project's samconfig so the test exercises the same manifest
    # resolution `make build` relies on; --no-cached keeps .aws-sam/ in the repo untouched.
    started = time.monotonic()
    result = subprocess.run(
        [
            str(tools.bin_dir / "sam"),
            "build",
            "--config-file",
            str(SAMCONFIG_PATH.relative_to(REPO_ROOT)),
            "--build-dir",
            str(build_dir),
            "--no-cached",
        ],
        cwd=REPO_ROOT,
        env=tool_env(extra_path=[runtime_python.parent]),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, f"sam build failed:\n{result.stdout}\n{result.stderr}"
    yield SamBuild(
        artifact_dir=build_dir / FUNCTION_ID, template=build_dir / "template.yaml", seconds=seconds
    )
    shutil.rmtree(build_dir, ignore_errors=True)
