"""Reading template.yaml as CloudFormation would, without AWS: short-form tags, SAM's Globals,
conditions for one set of parameter values, parameter constraints and rules, and names rendered
for a given stack name. Shared by the template checks in this folder.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped, unused-ignore]

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
NO_VALUE = {"Ref": "AWS::NoValue"}
SERVERLESS_FUNCTION = "AWS::Serverless::Function"


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


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --- SAM's Globals ---------------------------------------------------------------------------


def _merge_global(global_value: Any, local_value: Any) -> Any:
    """SAM's rule: maps merge (the function's keys win), lists add up (globals first), anything
    else the function's value replaces."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if any(key.startswith("Fn::") or key == "Ref" for key in (*global_value, *local_value)):
            return local_value
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_global(global_value[key], value) if key in merged else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return [*global_value, *local_value]
    return local_value


def function_properties(template: Mapping[str, Any], logical_id: str) -> dict[str, Any]:
    """A SAM function's properties with the template's Globals merged in, as SAM deploys them."""
    resource = template["Resources"][logical_id]
    assert resource["Type"] == SERVERLESS_FUNCTION, f"{logical_id} is not a SAM function"
    merged: dict[str, Any] = copy.deepcopy(template.get("Globals", {}).get("Function", {}))
    for key, value in resource.get("Properties", {}).items():
        merged[key] = _merge_global(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


def functions(template: Mapping[str, Any]) -> list[str]:
    return [
        logical_id
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == SERVERLESS_FUNCTION
    ]


# --- Conditions and rules --------------------------------------------------------------------

Evaluate = Callable[[Any], Any]

# The intrinsic functions CloudFormation allows inside Conditions and Rules, given an evaluator
# for their arguments and the stack's parameters and conditions.
_CONDITION_FUNCTIONS: dict[
    str, Callable[[Any, Evaluate, Mapping[str, Any], Mapping[str, Any]], Any]
] = {
    "Ref": lambda args, ev, params, conds: params[args],
    "Condition": lambda args, ev, params, conds: ev(conds[args]),
    "Fn::Equals": lambda args, ev, params, conds: ev(args[0]) == ev(args[1]),
    "Fn::Not": lambda args, ev, params, conds: not ev(args[0]),
    "Fn::And": lambda args, ev, params, conds: all(ev(arg) for arg in args),
    "Fn::Or": lambda args, ev, params, conds: any(ev(arg) for arg in args),
    "Fn::Join": lambda args, ev, params, conds: args[0].join(str(v) for v in ev(args[1])),
    "Fn::Contains": lambda args, ev, params, conds: ev(args[1]) in ev(args[0]),
}


def evaluate(expr: Any, conditions: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    def ev(sub: Any) -> Any:
        return evaluate(sub, conditions, params)

    if isinstance(expr, str):
        return expr
    if isinstance(expr, list):
        return [ev(item) for item in expr]
    if isinstance(expr, dict) and len(expr) == 1:
        ((fn, args),) = expr.items()
        if fn in _CONDITION_FUNCTIONS:
            return _CONDITION_FUNCTIONS[fn](args, ev, params, conditions)
    raise AssertionError(f"condition evaluator does not understand {expr!r}")


def rule_failures(template: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    """The AssertDescription of every rule assertion these parameter values break."""
    failures = []
    for name, rule in template.get("Rules", {}).items():
        assert set(rule) <= {"RuleCondition", "Assertions"}, f"rule {name}: {sorted(rule)}"
        if "RuleCondition" in rule and not evaluate(rule["RuleCondition"], {}, params):
            continue
        for assertion in rule["Assertions"]:
            if not evaluate(assertion["Assert"], {}, params):
                failures.append(f"{name}: {assertion['AssertDescription']}")
    return failures


# --- Parameter constraints -------------------------------------------------------------------

_KNOWN_PARAMETER_KEYS = frozenset(
    {
        "Type",
        "Default",
        "Description",
        "AllowedPattern",
        "AllowedValues",
        "ConstraintDescription",
        "MinValue",
        "MaxValue",
        "MinLength",
        "MaxLength",
        "NoEcho",
    }
)
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def parameter_errors(name: str, spec: Mapping[str, Any], raw: str) -> list[str]:
    """Why CloudFormation refuses `raw` for this parameter (empty: it accepts it).

    CloudFormation's rules: AllowedPattern must match the whole value (for a CommaDelimitedList,
    each member, which CloudFormation trims of spaces); AllowedValues lists the only values;
    MinLength/MaxLength bound a String's length; a Number must be a number within
    MinValue/MaxValue. The template's patterns use only syntax that Java's regular expressions
    (CloudFormation's) and Python's read alike.
    """
    unknown = set(spec) - _KNOWN_PARAMETER_KEYS
    assert not unknown, f"{name}: the evaluator does not know {sorted(unknown)}"
    kind = spec["Type"]
    if kind == "Number":
        return _number_errors(name, spec, raw)
    if kind == "String":
        errors = _length_errors(name, spec, raw)
        members = [raw]
    elif kind == "CommaDelimitedList":
        errors = []
        members = [member.strip() for member in raw.split(",")]
    else:
        raise AssertionError(f"{name}: the evaluator does not know the type {kind}")
    for member in members:
        if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], member):
            errors.append(f"{name}: {member!r} does not match AllowedPattern")
        if "AllowedValues" in spec and member not in [str(v) for v in spec["AllowedValues"]]:
            errors.append(f"{name}: {member!r} is not one of AllowedValues")
    return errors


def _number_errors(name: str, spec: Mapping[str, Any], raw: str) -> list[str]:
    if not _NUMBER.fullmatch(raw):
        return [f"{name}: {raw!r} is not a number"]
    number = float(raw)
    errors = []
    if "MinValue" in spec and number < float(spec["MinValue"]):
        errors.append(f"{name}: {raw} is below MinValue {spec['MinValue']}")
    if "MaxValue" in spec and number > float(spec["MaxValue"]):
        errors.append(f"{name}: {raw} is above MaxValue {spec['MaxValue']}")
    if "AllowedValues" in spec and number not in [float(v) for v in spec["AllowedValues"]]:
        errors.append(f"{name}: {raw} is not one of AllowedValues")
    return errors


def _length_errors(name: str, spec: Mapping[str, Any], raw: str) -> list[str]:
    errors = []
    if "MinLength" in spec and len(raw) < int(spec["MinLength"]):
        errors.append(f"{name}: shorter than MinLength {spec['MinLength']}")
    if "MaxLength" in spec and len(raw) > int(spec["MaxLength"]):
        errors.append(f"{name}: longer than MaxLength {spec['MaxLength']}")
    return errors


def is_constrained(spec: Mapping[str, Any]) -> bool:
    """Whether CloudFormation can refuse a value at all: a pattern, a list of values, or (for a
    Number) both bounds."""
    if "AllowedPattern" in spec or "AllowedValues" in spec:
        return True
    return spec["Type"] == "Number" and "MinValue" in spec and "MaxValue" in spec


# --- One deployment --------------------------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """The template as CloudFormation would see it for one set of parameter values."""

    template: dict[str, Any]
    params: dict[str, Any]

    def condition(self, name: str) -> bool:
        conditions = self.template["Conditions"]
        return bool(evaluate(conditions[name], conditions, self.params))

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
        """Every resource the stack creates, SAM functions with the Globals merged in."""
        out = {}
        for logical_id, resource in self.template["Resources"].items():
            if "Condition" in resource and not self.condition(resource["Condition"]):
                continue
            if resource["Type"] == SERVERLESS_FUNCTION:
                merged = function_properties(self.template, logical_id)
                out[logical_id] = self.resolve({**resource, "Properties": merged})
            else:
                out[logical_id] = self.resolve(resource)
        return out

    def outputs(self) -> dict[str, dict[str, Any]]:
        return {
            name: self.resolve(output)
            for name, output in self.template["Outputs"].items()
            if "Condition" not in output or self.condition(output["Condition"])
        }

    def refused(self) -> list[str]:
        """What CloudFormation would refuse of these parameter values (empty: it deploys)."""
        errors = []
        for name, spec in self.template["Parameters"].items():
            value = self.params[name]
            raw = ",".join(value) if isinstance(value, list) else value
            errors.extend(parameter_errors(name, spec, raw))
        return errors + rule_failures(self.template, self.params)


def deployment(template: dict[str, Any], **overrides: str) -> Deployment:
    params: dict[str, Any] = {}
    for name, spec in template["Parameters"].items():
        raw = str(overrides.pop(name, spec.get("Default", "")))
        if spec["Type"] == "CommaDelimitedList":
            params[name] = [member.strip() for member in raw.split(",")]
        else:
            params[name] = raw
    assert not overrides, f"unknown parameters: {sorted(overrides)}"
    return Deployment(template=template, params=params)


# --- Policies --------------------------------------------------------------------------------


def alternatives(node: Any) -> Iterator[Any]:
    """Every value a node can take across Fn::If branches, without AWS::NoValue."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, when_true, when_false = node["Fn::If"]
        yield from alternatives(when_true)
        yield from alternatives(when_false)
    elif node != NO_VALUE:
        yield node


def identity_statements(template: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Statements of every identity policy (roles, policies), across all condition branches."""
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents: list[Any] = []
        if resource["Type"] == "AWS::IAM::Role":
            for policies in alternatives(props.get("Policies", [])):
                for policy in policies:
                    documents.extend(p["PolicyDocument"] for p in alternatives(policy))
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in as_list(document["Statement"]):
                for alternative in alternatives(statement):
                    yield logical_id, alternative


def role_statements(stack: Deployment, role_id: str) -> list[dict[str, Any]]:
    """The statements of one role's inline policies, as deployed with the stack's values."""
    role = stack.resources()[role_id]["Properties"]
    return [
        statement
        for policy in role["Policies"]
        for statement in as_list(policy["PolicyDocument"]["Statement"])
    ]


# --- Names -----------------------------------------------------------------------------------

PSEUDO = {"AWS::Region": "us-east-1", "AWS::AccountId": "123456789012", "AWS::Partition": "aws"}
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def render(
    value: Any, stack_name: str, params: Mapping[str, Any], refs: Mapping[str, str] | None = None
) -> str:
    """A name-like value (Ref, Sub, Join of those) as CloudFormation would render it for a stack
    of this name; `refs` gives what a Ref to a resource returns (its physical name). A reference
    to anything else fails the test that asked."""
    variables = {**PSEUDO, "AWS::StackName": stack_name, **(refs or {})}

    def lookup(name: str) -> str:
        if name in variables:
            return variables[name]
        if name in params and isinstance(params[name], str):
            return str(params[name])
        raise AssertionError(f"cannot render ${{{name}}} in a name")

    if isinstance(value, str):
        return value
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return lookup(value["Ref"])
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return _SUB_VARIABLE.sub(lambda m: lookup(m.group(1)), value["Fn::Sub"])
    if isinstance(value, dict) and set(value) == {"Fn::Join"}:
        separator, parts = value["Fn::Join"]
        return str(separator).join(render(part, stack_name, params, refs) for part in parts)
    raise AssertionError(f"cannot render {value!r} as a name")


# The property that holds each resource type's physical name, where the template may set one.
# A type missing from here and from UNNAMED_TYPES fails tests/infra/test_two_stacks.py: a new
# resource type needs a decision about its name.
NAME_PROPERTIES = {
    SERVERLESS_FUNCTION: "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::SSM::Parameter": "Name",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::Events::Rule": "Name",
    "AWS::SNS::Topic": "TopicName",
    "AWS::IAM::Role": "RoleName",
}
# Types whose resources have no name of their own (an ID AWS generates, or none at all).
UNNAMED_TYPES = frozenset(
    {
        "AWS::Lambda::Permission",
        "AWS::SNS::Subscription",
        "AWS::SNS::TopicPolicy",
        "AWS::SecretsManager::RotationSchedule",
        "AWS::KMS::Key",
    }
)


def physical_names(
    template: Mapping[str, Any], stack_name: str, params: Mapping[str, Any]
) -> dict[str, str]:
    """The names the template gives its resources, rendered for a stack of this name. Resources
    it leaves unnamed get a name CloudFormation generates from the stack's, and are not listed."""
    names = {}
    for logical_id, resource in template["Resources"].items():
        prop = NAME_PROPERTIES.get(resource["Type"])
        value = resource.get("Properties", {}).get(prop) if prop else None
        if value is not None:
            names[logical_id] = render(value, stack_name, params)
    return names


def render_dashboard(
    template: Mapping[str, Any], stack_name: str, params: Mapping[str, Any]
) -> dict[str, Any]:
    """The dashboard body as CloudWatch receives it for a stack of this name."""
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = physical_names(template, stack_name, params)
    values = {}
    for key, value in variables.items():
        if isinstance(value, dict) and set(value) == {"Fn::FindInMap"}:
            mapping, first, second = value["Fn::FindInMap"]
            values[key] = str(template["Mappings"][mapping][first][second])
        else:
            values[key] = render(value, stack_name, params)

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.endswith(".Arn"):
            logical_id = name.removesuffix(".Arn")
            assert template["Resources"][logical_id]["Type"] == "AWS::CloudWatch::Alarm", name
            return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{names[logical_id]}"
        if name in values:
            return values[name]
        return render({"Ref": name}, stack_name, params, names)

    loaded = json.loads(_SUB_VARIABLE.sub(fill, body))
    assert isinstance(loaded, dict)
    return loaded
