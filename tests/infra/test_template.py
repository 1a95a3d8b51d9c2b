"""Checks of template.yaml: the AWS linters, least privilege, conditional resources, the build."""

from __future__ import annotations

import json
import re
import tomllib
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]

if TYPE_CHECKING:
    from tests.infra.conftest import SamBuild, Tools

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = REPO_ROOT / "template.yaml"
FUNCTION_ID = "RotatorFunction"
NO_VALUE = {"Ref": "AWS::NoValue"}
FUNCTION_NAME_SUB = "${AWS::StackName}-rotator"
FUNCTION_ARN_SUB = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:" + FUNCTION_NAME_SUB
)
ROTATION_LAMBDA_KEY = "secretsmanager:resource/AllowRotationLambdaArn"
# Skips are reviewed here on purpose: adding one must be a visible change to this test.
EXPECTED_CHECKOV_SKIPS = {("RotatorFunction", "CKV_AWS_116"), ("RotatorFunction", "CKV_AWS_173")}
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


# --- Reading the template -------------------------------------------------------------------


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


Evaluate = Callable[[Any], Any]

# The intrinsic functions CloudFormation allows inside Conditions, given an evaluator for their
# arguments and the stack's parameters and conditions.
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
}


def _evaluate(expr: Any, conditions: Mapping[str, Any], params: Mapping[str, Any]) -> Any:
    def ev(sub: Any) -> Any:
        return _evaluate(sub, conditions, params)

    if isinstance(expr, str):
        return expr
    if isinstance(expr, list):
        return [ev(item) for item in expr]
    if isinstance(expr, dict) and len(expr) == 1:
        ((fn, args),) = expr.items()
        if fn in _CONDITION_FUNCTIONS:
            return _CONDITION_FUNCTIONS[fn](args, ev, params, conditions)
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


def _alternatives(node: Any) -> Iterator[Any]:
    """Every value a node can take across Fn::If branches, without AWS::NoValue."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, when_true, when_false = node["Fn::If"]
        yield from _alternatives(when_true)
        yield from _alternatives(when_false)
    elif node != NO_VALUE:
        yield node


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _identity_statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Statements of every identity policy (roles, policies), across all condition branches."""
    for logical_id, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        documents: list[Any] = []
        if resource["Type"] == "AWS::IAM::Role":
            for policies in _alternatives(props.get("Policies", [])):
                for policy in policies:
                    documents.extend(p["PolicyDocument"] for p in _alternatives(policy))
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in _as_list(document["Statement"]):
                for alternative in _alternatives(statement):
                    yield logical_id, alternative


def _statement_sort_key(item: tuple[str, dict[str, Any]]) -> str:
    return item[0] + json.dumps(item[1], sort_keys=True)


# --- The AWS tools ---------------------------------------------------------------------------


def test_sam_validate_lint_accepts_the_template(tools: Tools) -> None:
    # Given the template at the repo root
    # When SAM transforms and lints it
    result = tools.run("sam", "validate", "--lint", "--template-file", str(TEMPLATE_PATH))
    # Then it reports no problem
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_accepts_the_template(tools: Tools) -> None:
    # Given the template
    # When cfn-lint checks it, warnings and informational findings included
    result = tools.run("cfn-lint", str(TEMPLATE_PATH))
    # Then it finds nothing
    assert result.returncode == 0, result.stdout + result.stderr


def test_checkov_accepts_the_template(tools: Tools) -> None:
    # Given the template with its documented skips
    # When checkov scans it offline
    result = tools.run(
        "checkov",
        "-f",
        str(TEMPLATE_PATH),
        "--framework",
        "cloudformation",
        "--skip-download",
        "--quiet",
        "--compact",
    )
    # Then no check fails
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_checkov_skip_is_known_and_justified(template: dict[str, Any]) -> None:
    # Given the checkov skips declared in resource metadata
    skips = {
        (logical_id, skip["id"]): skip.get("comment", "")
        for logical_id, resource in template["Resources"].items()
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", [])
    }
    # When each is inspected
    short = {key: comment for key, comment in skips.items() if len(comment.strip()) < 20}
    # Then each carries a real reason, and the set is the reviewed one
    assert not short, f"checkov skips without a justification: {short}"
    assert all(re.fullmatch(r"CKV2?_AWS_\d+", check_id) for _, check_id in skips)
    assert set(skips) == EXPECTED_CHECKOV_SKIPS


# --- Least privilege -------------------------------------------------------------------------


def test_function_uses_the_explicit_role_only(template: dict[str, Any]) -> None:
    # Given the function definition
    props = template["Resources"][FUNCTION_ID]["Properties"]
    # When its permissions are looked up
    # Then they come from the reviewed role, not from SAM policy templates
    assert props["Role"] == {"Fn::GetAtt": ["RotatorRole", "Arn"]}
    assert "Policies" not in props
    assert props["FunctionName"] == {"Fn::Sub": FUNCTION_NAME_SUB}


def _is_admin_read(statement: dict[str, Any]) -> bool:
    """The one Secrets Manager grant without the rotation condition: reading admin secrets."""
    return statement.get("Sid") == "ReadNamedAdminSecrets"


def test_secretsmanager_access_requires_this_function_as_rotator(template: dict[str, Any]) -> None:
    # Given every identity-policy statement that mentions a Secrets Manager action, except the
    # admin-secret read (checked on its own below)
    statements = [
        (logical_id, statement)
        for logical_id, statement in _identity_statements(template)
        if any(str(a).lower().startswith("secretsmanager:") for a in _as_list(statement["Action"]))
        and not _is_admin_read(statement)
    ]
    assert statements, "no Secrets Manager statement found: the role cannot rotate"
    for logical_id, statement in sorted(statements, key=_statement_sort_key):
        # When its resource and condition are read
        resources = _as_list(statement["Resource"])
        condition = statement.get("Condition", {}).get("StringEquals", {})
        # Then it never names every resource, and it only applies to secrets that name this
        # function (by the ARN built from its fixed name) as their rotation function
        assert "*" not in resources, f"{logical_id}: {statement}"
        assert condition.get(ROTATION_LAMBDA_KEY) == {"Fn::Sub": FUNCTION_ARN_SUB}, (
            f"{logical_id}: Secrets Manager access without the {ROTATION_LAMBDA_KEY} condition"
        )
        assert statement["Effect"] == "Allow"
        assert set(_as_list(statement["Action"])) <= {
            "secretsmanager:DescribeSecret",
            "secretsmanager:GetSecretValue",
            "secretsmanager:PutSecretValue",
            "secretsmanager:UpdateSecretVersionStage",
        }


def _role_statements(stack: Deployment) -> list[dict[str, Any]]:
    role = stack.resources()["RotatorRole"]["Properties"]
    return [
        statement
        for policy in role["Policies"]
        for statement in _as_list(policy["PolicyDocument"]["Statement"])
    ]


def test_admin_secrets_are_readable_exactly_as_named_and_not_at_all_by_default(
    template: dict[str, Any],
) -> None:
    admin = [
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:cekura/admin-AbCdEf",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:cekura/admin-2-GhIjKl",
    ]
    # Given the stack without AdminSecretArns, and with two admin secrets
    default = deployment(template)
    given = deployment(template, AdminSecretArns=",".join(admin))

    # When the role's statements are resolved for each
    default_statements = _role_statements(default)
    given_statements = _role_statements(given)

    # Then by default nothing outside the rotation grant reads a secret, and no KMS is granted
    assert not default.condition("HasAdminSecrets")
    assert not [s for s in default_statements if _is_admin_read(s)]
    assert not [
        s
        for s in default_statements
        if any(str(a).startswith("kms:") for a in _as_list(s["Action"]))
    ]
    # And with admin secrets, one statement reads exactly the named ARNs, read-only
    assert given.condition("HasAdminSecrets")
    (read,) = [s for s in given_statements if _is_admin_read(s)]
    assert read["Effect"] == "Allow"
    assert _as_list(read["Action"]) == ["secretsmanager:GetSecretValue"]
    assert read["Resource"] == {"Ref": "AdminSecretArns"}
    assert given.params["AdminSecretArns"] == admin
    assert "Condition" not in read
    # And KMS may only decrypt, only through Secrets Manager, only for those secrets
    (kms,) = [
        s for s in given_statements if any(str(a).startswith("kms:") for a in _as_list(s["Action"]))
    ]
    assert _as_list(kms["Action"]) == ["kms:Decrypt"]
    assert kms["Condition"]["StringEquals"] == {
        "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
        "kms:EncryptionContext:SecretARN": {"Ref": "AdminSecretArns"},
    }
    assert kms["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:*:key/*"}


def test_admin_secret_environment_comes_from_the_parameter(template: dict[str, Any]) -> None:
    # Given the function's environment
    env = template["Resources"][FUNCTION_ID]["Properties"]["Environment"]["Variables"]
    # When the admin variables are read
    # Then the first listed ARN is the default and all of them are allowed; with the parameter's
    # empty default, the first entry is "" (CloudFormation splits "" into [""]), so both are empty
    assert env["CEKURA_ADMIN_SECRET_ARN"] == {"Fn::Select": [0, {"Ref": "AdminSecretArns"}]}
    assert env["CEKURA_ALLOWED_ADMIN_SECRET_ARNS"] == {
        "Fn::Join": [",", {"Ref": "AdminSecretArns"}]
    }
    param = template["Parameters"]["AdminSecretArns"]
    assert param["Type"] == "CommaDelimitedList"
    assert param["Default"] == ""


def test_no_identity_policy_grants_wildcard_actions(template: dict[str, Any]) -> None:
    # Given every identity-policy statement
    for logical_id, statement in _identity_statements(template):
        # When its actions are read
        actions = [str(a) for a in _as_list(statement.get("Action", []))]
        # Then none is a wildcard and NotAction (an implicit wildcard) is not used
        assert "NotAction" not in statement, f"{logical_id}: {statement}"
        wildcards = [a for a in actions if a == "*" or a.endswith(":*")]
        assert not wildcards, f"{logical_id} grants {wildcards}"


def test_kms_use_only_with_a_given_key_and_only_through_secrets_manager(
    template: dict[str, Any],
) -> None:
    # Given the role's statements with and without KmsKeyArn
    def kms_statements(**params: str) -> list[dict[str, Any]]:
        role = deployment(template, **params).resources()["RotatorRole"]["Properties"]
        return [
            statement
            for policy in role["Policies"]
            for statement in _as_list(policy["PolicyDocument"]["Statement"])
            if any(str(a).startswith("kms:") for a in _as_list(statement["Action"]))
        ]

    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    # When the stack is deployed without and with a key (the admin-secret grant is checked above)
    without_key = kms_statements()
    with_key = kms_statements(KmsKeyArn=key)
    # Then KMS is granted only for the given key, and only via Secrets Manager in this region
    assert without_key == []
    assert with_key
    for statement in with_key:
        assert statement["Resource"] == {"Ref": "KmsKeyArn"}
        assert statement["Condition"]["StringEquals"]["kms:ViaService"] == {
            "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"
        }
        assert "kms:Encrypt" not in statement["Action"]


def test_logs_are_written_only_to_the_stack_log_group(template: dict[str, Any]) -> None:
    # Given the log statements of the role and the log group
    log_group = template["Resources"]["RotatorLogGroup"]["Properties"]
    statements = [
        s
        for _, s in _identity_statements(template)
        if any(str(a).startswith("logs:") for a in _as_list(s["Action"]))
    ]
    # When their targets are compared
    # Then logs go to /aws/lambda/<function name> only, which the stack owns, so it can't create
    # log groups elsewhere
    assert log_group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + FUNCTION_NAME_SUB}
    assert statements
    for statement in statements:
        assert statement["Resource"] == {"Fn::GetAtt": ["RotatorLogGroup", "Arn"]}
        assert "logs:CreateLogGroup" not in statement["Action"]


def test_only_secrets_manager_in_this_account_may_invoke(template: dict[str, Any]) -> None:
    # Given the Lambda permissions in the template
    permissions = [
        r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == "AWS::Lambda::Permission"
    ]
    # When their principals are read
    # Then the one permission is for Secrets Manager, limited to this account
    assert len(permissions) == 1
    (permission,) = permissions
    assert permission["Principal"] == "secretsmanager.amazonaws.com"
    assert permission["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert permission["FunctionName"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert permission["Action"] == "lambda:InvokeFunction"


# --- Conditional resources -------------------------------------------------------------------


def test_defaults_deploy_without_vpc_secret_or_email(template: dict[str, Any]) -> None:
    # Given every parameter at its default
    stack = deployment(template)
    # When CloudFormation resolves the conditions
    resources = stack.resources()
    function = resources[FUNCTION_ID]["Properties"]
    role = resources["RotatorRole"]["Properties"]
    # Then there is no VPC, managed secret or e-mail subscription; concurrency stays reserved
    assert "VpcConfig" not in function
    assert "ManagedPolicyArns" not in role
    assert not {"ManagedSecret", "ManagedSecretRotation", "AlertEmailSubscription"} & set(resources)
    assert "ManagedSecretArn" not in stack.outputs()
    assert function["ReservedConcurrentExecutions"] == {"Ref": "MaxConcurrentRotations"}
    assert stack.params["MaxConcurrentRotations"] == "10"


@pytest.mark.parametrize(
    ("subnets", "groups", "in_vpc"),
    [
        ("subnet-1,subnet-2", "sg-1", True),
        ("subnet-1", "", False),
        ("", "sg-1", False),
    ],
)
def test_vpc_config_only_when_subnets_and_groups_are_given(
    template: dict[str, Any], subnets: str, groups: str, in_vpc: bool
) -> None:
    # Given subnets and security groups, possibly only one of them
    stack = deployment(template, SubnetIds=subnets, SecurityGroupIds=groups)
    # When the function and role are resolved
    resources = stack.resources()
    function = resources[FUNCTION_ID]["Properties"]
    role = resources["RotatorRole"]["Properties"]
    # Then VPC placement and the ENI permissions come together, and only with both lists
    assert ("VpcConfig" in function) is in_vpc
    assert ("ManagedPolicyArns" in role) is in_vpc
    if in_vpc:
        assert function["VpcConfig"] == {
            "SubnetIds": {"Ref": "SubnetIds"},
            "SecurityGroupIds": {"Ref": "SecurityGroupIds"},
        }
        assert role["ManagedPolicyArns"] == [
            {
                "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                "AWSLambdaVPCAccessExecutionRole"
            }
        ]


def test_managed_secret_rotates_on_schedule_but_not_at_deploy(template: dict[str, Any]) -> None:
    # Given a managed secret name
    stack = deployment(template, ManagedSecretName="cekura/api-key")
    # When the stack is resolved
    resources = stack.resources()
    schedule = resources["ManagedSecretRotation"]
    secret = resources["ManagedSecret"]
    # Then the secret and its schedule exist; the placeholder is not rotated at deploy time, the
    # schedule waits for the invoke permission, and the secret survives stack deletion
    assert schedule["Properties"]["RotateImmediatelyOnUpdate"] is False
    assert schedule["Properties"]["RotationLambdaARN"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert schedule["Properties"]["SecretId"] == {"Ref": "ManagedSecret"}
    assert schedule["Properties"]["RotationRules"] == {
        "ScheduleExpression": {"Ref": "RotationSchedule"},
        "Duration": {"Ref": "RotationWindow"},
    }
    assert "SecretsManagerInvokePermission" in _as_list(schedule["DependsOn"])
    assert secret["DeletionPolicy"] == "Retain"
    assert "bootstrap replaces this" in secret["Properties"]["SecretString"]
    assert "ManagedSecretArn" in stack.outputs()


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_or_empty_concurrency_leaves_function_unreserved(
    template: dict[str, Any], value: str
) -> None:
    # Given MaxConcurrentRotations switched off
    stack = deployment(template, MaxConcurrentRotations=value)
    # When the function is resolved
    function = stack.resources()[FUNCTION_ID]["Properties"]
    # Then no concurrency is reserved (CloudFormation would reject 0 as "stop the function")
    assert "ReservedConcurrentExecutions" not in function


def test_customer_key_replaces_the_stack_key_everywhere(template: dict[str, Any]) -> None:
    key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    # Given the stack with and without a customer managed key
    default = deployment(template, ManagedSecretName="s").resources()
    custom = deployment(template, ManagedSecretName="s", KmsKeyArn=key).resources()
    # When the encrypted resources are compared
    # Then without a key the stack creates its own (never aws/sns, which EventBridge and CloudWatch
    # cannot publish through); with a key every encrypted resource uses it
    assert "StackKey" in default
    assert "StackKey" not in custom
    stack_key = {"Fn::GetAtt": ["StackKey", "Arn"]}
    assert default["AlertTopic"]["Properties"]["KmsMasterKeyId"] == stack_key
    assert default["RotatorLogGroup"]["Properties"]["KmsKeyId"] == stack_key
    assert "KmsKeyId" not in default["ManagedSecret"]["Properties"]
    given = {"Ref": "KmsKeyArn"}
    assert custom["AlertTopic"]["Properties"]["KmsMasterKeyId"] == given
    assert custom["RotatorLogGroup"]["Properties"]["KmsKeyId"] == given
    assert custom["ManagedSecret"]["Properties"]["KmsKeyId"] == given


def test_alarm_email_subscribes_only_when_given(template: dict[str, Any]) -> None:
    # Given an alarm e-mail address
    with_email = deployment(template, AlarmEmail="ops@example.com").resources()
    # When the subscriptions are resolved
    subscription = with_email["AlertEmailSubscription"]["Properties"]
    # Then the address is subscribed to the alert topic by e-mail
    assert subscription == {
        "TopicArn": {"Ref": "AlertTopic"},
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }


# --- Function and notifications --------------------------------------------------------------


def test_function_runtime_and_environment(template: dict[str, Any]) -> None:
    # Given the function definition
    props = template["Resources"][FUNCTION_ID]["Properties"]
    env = props["Environment"]["Variables"]
    # When its runtime settings are read
    # Then it runs the package's handler on Python 3.13/arm64 with the settings the code reads
    assert props["Runtime"] == "python3.13"
    assert props["Architectures"] == ["arm64"]
    assert props["CodeUri"] == "lambda/"
    assert props["Handler"] == "cekura_rotator.handler.lambda_handler"
    assert isinstance(props["Timeout"], int)
    assert isinstance(props["MemorySize"], int)
    assert env["CEKURA_API_URL"] == {"Ref": "CekuraApiUrl"}
    assert env["CEKURA_PROJECT_ID"] == {"Ref": "CekuraProjectId"}
    assert env["REVOCATION_POLICY"] == {"Ref": "RevocationPolicy"}
    assert env["POWERTOOLS_SERVICE_NAME"] == {"Fn::FindInMap": ["Metrics", "Names", "Service"]}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == {
        "Fn::FindInMap": ["Metrics", "Names", "Namespace"]
    }
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert template["Parameters"]["LogLevel"]["Default"] == "INFO"


def test_parameter_defaults_are_safe(template: dict[str, Any]) -> None:
    # Given the parameter declarations
    params = template["Parameters"]
    # When their defaults are checked against their own constraints
    for name, spec in params.items():
        default = str(spec.get("Default", ""))
        if "AllowedPattern" in spec and spec["Type"] == "String":
            assert re.fullmatch(spec["AllowedPattern"], default), name
        if "AllowedValues" in spec:
            assert default in [str(v) for v in spec["AllowedValues"]], name
    # Then the defaults are the documented, conservative ones
    assert params["CekuraApiUrl"]["Default"] == "https://api.cekura.ai"
    assert not re.fullmatch(params["CekuraApiUrl"]["AllowedPattern"], "http://api.cekura.ai")
    assert params["RevocationPolicy"]["Default"] == "grace"
    assert params["RotationSchedule"]["Default"] == "rate(30 days)"
    assert re.fullmatch(params["RotationSchedule"]["AllowedPattern"], "cron(0 4 ? * SUN *)")
    assert params["LogRetentionDays"]["Default"] == 90


def test_rotation_failures_reach_the_alert_topic(template: dict[str, Any]) -> None:
    # Given the EventBridge rule, the errors alarm and the topic policy
    resources = template["Resources"]
    rule = resources["RotationFailedRule"]["Properties"]
    alarm = resources["RotatorErrorsAlarm"]["Properties"]
    policy = resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    # When their wiring is read
    publishers = {
        s["Principal"]["Service"]: s["Condition"]["ArnEquals"]["aws:SourceArn"]
        for s in policy
        if s["Effect"] == "Allow"
    }
    # Then failed rotations, function errors and the revocation alarms publish to the topic, and
    # the topic accepts exactly those sources
    assert rule["EventPattern"]["source"] == ["aws.secretsmanager"]
    assert rule["EventPattern"]["detail-type"] == ["AWS Service Event via CloudTrail"]
    assert rule["EventPattern"]["detail"]["eventName"] == ["RotationFailed"]
    assert rule["Targets"][0]["Arn"] == {"Ref": "AlertTopic"}
    assert alarm["MetricName"] == "Errors"
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": FUNCTION_ID}}]
    assert (alarm["Threshold"], alarm["Period"]) == (1, 300)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["AlarmActions"] == [{"Ref": "AlertTopic"}]
    alarms = [a for a, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert publishers == {
        "events.amazonaws.com": {"Fn::GetAtt": ["RotationFailedRule", "Arn"]},
        "cloudwatch.amazonaws.com": [{"Fn::GetAtt": [a, "Arn"]} for a in alarms],
    }
    for name in alarms:
        assert resources[name]["Properties"]["AlarmActions"] == [{"Ref": "AlertTopic"}]


def test_outputs_explain_attach_and_bootstrap(template: dict[str, Any]) -> None:
    # Given the stack outputs
    outputs = template["Outputs"]
    attach = outputs["AttachRotationCommand"]["Value"]["Fn::Sub"]
    bootstrap = outputs["BootstrapCommand"]["Value"]["Fn::Sub"]
    # When the instructions are read
    # Then they name this function and never rotate an un-bootstrapped secret on attach
    assert attach.startswith("aws secretsmanager rotate-secret --secret-id ")
    assert "--rotation-lambda-arn ${RotatorFunction.Arn}" in attach
    assert "--rotation-rules" in attach
    assert "--no-rotate-immediately" in attach
    assert bootstrap.startswith("cekura-rotator bootstrap --secret-name ")
    assert "--project-id" in bootstrap
    assert "--function-arn ${RotatorFunction.Arn}" in bootstrap
    assert {"RotatorFunctionArn", "RotatorRoleArn", "ManagedSecretArn", "DashboardUrl"} <= set(
        outputs
    )


def test_serverless_repo_files_exist(template: dict[str, Any]) -> None:
    # Given the Serverless Application Repository metadata
    app = template["Metadata"]["AWS::ServerlessRepo::Application"]
    # When sam package/deploy uploads the files it names
    # Then they exist, or the upload fails with InvalidLocalPathError
    assert app["SpdxLicenseId"] == "Apache-2.0"
    for key in ("LicenseUrl", "ReadmeUrl"):
        assert (REPO_ROOT / app[key]).is_file(), f"{key}: {app[key]} missing at the repo root"


# --- Operating from the console ---------------------------------------------------------------

# The metrics the code emits under the namespace and service the template sets.
EMITTED_METRICS = (
    "StepSucceeded",
    "StepFailed",
    "KeysMinted",
    "KeysRevoked",
    "RevocationsRefused",
    "RevocationsFailed",
    "RevocationsOwed",
    "StraysDeleted",
)
_SUB_VARIABLE = re.compile(r"\$\{([^}!]+)\}")


def _metric_names(template: dict[str, Any]) -> dict[str, str]:
    return dict(template["Mappings"]["Metrics"]["Names"])


def _dashboard(template: dict[str, Any]) -> dict[str, Any]:
    """The dashboard body as CloudWatch receives it, with every ${...} filled in."""
    body, variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = _metric_names(template)
    assert variables == {
        "Namespace": {"Fn::FindInMap": ["Metrics", "Names", "Namespace"]},
        "Service": {"Fn::FindInMap": ["Metrics", "Names", "Service"]},
    }
    known = {
        "Namespace": names["Namespace"],
        "Service": names["Service"],
        "AWS::Region": "us-east-1",
        "AWS::StackName": "stack",
        "RotatorFunction": "stack-rotator",
        "RevocationsOwedAlarmThreshold": "1",
    }

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.endswith(".Arn"):
            assert name.removesuffix(".Arn") in template["Resources"], name
            return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name.removesuffix('.Arn')}"
        assert name in known, f"the dashboard names ${{{name}}}, which nothing defines"
        return known[name]

    loaded = json.loads(_SUB_VARIABLE.sub(fill, body))
    assert isinstance(loaded, dict)
    return loaded


def test_code_emits_every_metric_the_console_reads() -> None:
    # Given the rotator's source
    code = "\n".join(
        p.read_text(encoding="utf-8")
        for p in (REPO_ROOT / "lambda" / "cekura_rotator").glob("*.py")
    )
    # When each metric the dashboard and alarms read is looked up
    missing = [name for name in EMITTED_METRICS if f'"{name}"' not in code]
    # Then the code names it: a renamed metric would leave a widget or an alarm silently empty
    assert not missing, f"metrics the template reads but the code never emits: {missing}"


def test_metric_names_have_one_source_matching_the_codes_fallbacks(
    template: dict[str, Any],
) -> None:
    # Given the template's metric names and the code's fall-backs
    from cekura_rotator import observability

    names = _metric_names(template)
    # When they are compared
    # Then the mapping (which the environment, dashboard and alarms use) holds the code's
    # defaults, so a function started without the environment still lands on the dashboard
    assert names == {
        "Namespace": observability.DEFAULT_NAMESPACE,
        "Service": observability.DEFAULT_SERVICE,
    }


@pytest.mark.parametrize(
    ("alarm", "metric", "statistic", "threshold"),
    [
        ("RevocationsOwedAlarm", "RevocationsOwed", "Maximum", "RevocationsOwedAlarmThreshold"),
        (
            "RevocationsRefusedAlarm",
            "RevocationsRefused",
            "Sum",
            "RevocationsRefusedAlarmThreshold",
        ),
    ],
)
def test_revocation_alarms_watch_the_emitted_metric_past_a_threshold(
    template: dict[str, Any], alarm: str, metric: str, statistic: str, threshold: str
) -> None:
    # Given one of the revocation alarms
    props = template["Resources"][alarm]["Properties"]
    param = template["Parameters"][threshold]
    # When its metric and threshold are read
    dimensions = {d["Name"]: d["Value"] for d in props["Dimensions"]}
    # Then it reads the metric exactly as Powertools publishes it (namespace, the service
    # dimension and the finishSecret step), fires at the parameter's threshold, and alerts
    assert props["Namespace"] == {"Fn::FindInMap": ["Metrics", "Names", "Namespace"]}
    assert props["MetricName"] == metric
    assert dimensions == {
        "service": {"Fn::FindInMap": ["Metrics", "Names", "Service"]},
        "Step": "finishSecret",
    }
    assert props["Statistic"] == statistic
    assert props["Threshold"] == {"Ref": threshold}
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["TreatMissingData"] == "notBreaching"
    assert props["AlarmActions"] == [{"Ref": "AlertTopic"}]
    assert (param["Type"], param["Default"], param["MinValue"]) == ("Number", 1, 1)


def test_dashboard_shows_steps_keys_revocations_duration_and_alarms(
    template: dict[str, Any],
) -> None:
    # Given the dashboard as CloudWatch would receive it
    widgets = _dashboard(template)["widgets"]
    names = _metric_names(template)
    # When the metrics its widgets read are collected
    series = [m for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    searched = " ".join(m[0]["expression"] for m in series if isinstance(m[0], dict))
    plain = {(m[0], m[1]) for m in series if isinstance(m[0], str)}
    lambda_metrics = {(m[1], m[3]) for m in series if m[0] == "AWS/Lambda"}
    alarms = [w for w in widgets if w["type"] == "alarm"]
    # Then every emitted metric is shown, under the template's namespace and service
    for metric in EMITTED_METRICS:
        assert f'MetricName="{metric}"' in searched or (names["Namespace"], metric) in plain
    assert searched.count(f"{{{names['Namespace']},Step,service}}") == searched.count("SEARCH(")
    assert searched.count(f'service="{names["Service"]}"') == searched.count("SEARCH(")
    # And the function's duration, and the three alarms
    assert ("Duration", "stack-rotator") in lambda_metrics
    assert len(alarms) == 1
    expected = ["RotatorErrorsAlarm", "RevocationsOwedAlarm", "RevocationsRefusedAlarm"]
    assert [a.rsplit(":", 1)[1] for a in alarms[0]["properties"]["alarms"]] == expected
    # And every widget fits the 24-column grid
    for widget in widgets:
        assert widget["x"] >= 0
        assert widget["x"] + widget["width"] <= 24


# --- One version -----------------------------------------------------------------------------


def test_one_version_everywhere(template: dict[str, Any]) -> None:
    # Given the package's version, the package metadata's source and the template
    from cekura_rotator import __version__
    from cekura_rotator.cekura import USER_AGENT

    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    app = template["Metadata"]["AWS::ServerlessRepo::Application"]
    changelog = (REPO_ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    # When each place that states a version is read
    # Then the package metadata reads __version__ (it states none itself), the SAR metadata and
    # the user agent equal it, and the changelog has a section for it
    assert "version" not in pyproject["project"]
    assert "version" in pyproject["project"]["dynamic"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["version"] == {
        "attr": "cekura_rotator.__version__"
    }
    assert app["SemanticVersion"] == __version__
    assert f"cekura-rotator/{__version__}" == USER_AGENT
    assert re.search(rf"^## \[{re.escape(__version__)}\]", changelog, re.MULTILINE)


def test_package_dependencies_are_the_lambda_manifest() -> None:
    # Given pyproject.toml
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    # When its dependencies and packages are looked up
    # Then the dependencies are read from requirements.txt, the one manifest sam build uses, plus
    # the AWS SDK that the Lambda runtime provides to the function, and each package comes from
    # its own root
    assert "dependencies" not in pyproject["project"]
    assert pyproject["tool"]["setuptools"]["dynamic"]["dependencies"] == {
        "file": ["requirements.txt", "requirements-aws.txt"]
    }
    assert pyproject["tool"]["setuptools"]["package-dir"] == {
        "cekura_rotator": "lambda/cekura_rotator",
        "cekura_rotator_cli": "cli/cekura_rotator_cli",
    }


# --- Sample events ---------------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS)
def test_sample_event_matches_secrets_manager_request(step: str) -> None:
    # Given the sample event for one rotation step
    path = REPO_ROOT / "infra" / "events" / f"{step}.json"
    # When it is parsed
    event = json.loads(path.read_text(encoding="utf-8"))
    # Then it has exactly the fields Secrets Manager sends, with well-formed values
    assert set(event) == {"Step", "SecretId", "ClientRequestToken", "RotationToken"}
    assert event["Step"] == step
    assert re.fullmatch(
        r"arn:aws:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-\w{6}", event["SecretId"]
    )
    uuid.UUID(event["ClientRequestToken"])
    uuid.UUID(event["RotationToken"])


# --- Build -----------------------------------------------------------------------------------


def _text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace") if path.suffix == ".py" else ""


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_sam_build_packages_code_and_dependencies_only(
    sam_build: SamBuild, template: dict[str, Any]
) -> None:
    # Given the function built by sam build from the top-level requirements.txt
    root = sam_build.artifact_dir
    files = [p for p in root.rglob("*") if p.is_file()]
    # When its contents are listed
    top_level = {p.name for p in root.iterdir()}
    unzipped = sum(p.stat().st_size for p in files)
    module, _, function = template["Resources"][FUNCTION_ID]["Properties"]["Handler"].rpartition(
        "."
    )
    handler_file = root.joinpath(*module.split(".")).with_suffix(".py")
    # Then the handler the template names and its runtime dependencies are in, and no development
    # leftovers
    assert handler_file.is_file(), f"{handler_file.relative_to(root)} not in the package"
    assert f"def {function}(" in handler_file.read_text(encoding="utf-8")
    assert {"httpx", "aws_lambda_powertools", "tenacity"} <= top_level
    assert not {"tests", ".venv", "venv", ".pytest_cache", ".mypy_cache"} & top_level
    assert not [p for p in root.rglob("__pycache__")]
    assert not [p for p in files if p.suffix == ".pyc"]
    assert not list((root / "cekura_rotator").rglob("test_*.py"))
    # And the function's package holds only what the function imports: no operator CLI
    assert "cekura_rotator_cli" not in top_level
    assert not (root / "cekura_rotator" / "cli.py").exists()
    assert not [p for p in files if "argparse" in _text(p) and "cekura_rotator" in p.parts]
    # And SAM found the manifest by itself (it only warns when it does not)
    assert "requirements.txt file not found" not in sam_build.output
    assert unzipped < LAMBDA_UNZIPPED_LIMIT
    assert sam_build.template.is_file()


@pytest.mark.slow
@pytest.mark.xdist_group("sam")
def test_sam_build_fits_the_zip_upload_limit(sam_build: SamBuild, tmp_path: Path) -> None:
    # Given the built function directory
    archive = tmp_path / "function.zip"
    # When it is zipped the way sam package does (deflate)
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(sam_build.artifact_dir.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(sam_build.artifact_dir))
    # Then it is within Lambda's 50 MB direct-upload limit
    assert archive.stat().st_size < 50 * 1024 * 1024
