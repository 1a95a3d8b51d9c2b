"""Checks of template.yaml: the AWS linters, least privilege of both roles, the permissions
boundary, the alert topic (the stack's or an existing one), conditional resources, the health
check's wiring, and the console (alarms, dashboard)."""

from __future__ import annotations

import json
import re
import tomllib
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from tests.infra.cfn import (
    REPO_ROOT,
    TEMPLATE_PATH,
    Deployment,
    alternatives,
    as_list,
    deployment,
    function_properties,
    functions,
    identity_statements,
    load_template,
    physical_names,
    render_dashboard,
    role_statements,
)

if TYPE_CHECKING:
    from tests.infra.conftest import Tools

FUNCTION_ID = "RotatorFunction"
HEALTH_ID = "HealthCheckFunction"
ROLES = {FUNCTION_ID: "RotatorRole", HEALTH_ID: "HealthCheckRole"}
LOG_GROUPS = {FUNCTION_ID: "RotatorLogGroup", HEALTH_ID: "HealthCheckLogGroup"}
FUNCTION_NAME_SUB = "${AWS::StackName}-rotator"
HEALTH_NAME_SUB = "${AWS::StackName}-health"
FUNCTION_ARN_SUB = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:" + FUNCTION_NAME_SUB
)
ROTATION_LAMBDA_KEY = "secretsmanager:resource/AllowRotationLambdaArn"
# What each role may do to a secret that names the rotator. The health check never writes a value.
SECRET_ACTIONS = {
    "RotatorRole": {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    },
    "HealthCheckRole": {
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:ListSecretVersionIds",
        "secretsmanager:UpdateSecretVersionStage",
        "secretsmanager:RotateSecret",
    },
}
# Skips are reviewed here on purpose: adding one must be a visible change to this test.
EXPECTED_CHECKOV_SKIPS = {
    ("RotatorFunction", "CKV_AWS_116"),
    ("RotatorFunction", "CKV_AWS_173"),
    ("HealthCheckFunction", "CKV_AWS_116"),
    ("HealthCheckFunction", "CKV_AWS_173"),
}
STEPS = ("createSecret", "setSecret", "testSecret", "finishSecret")
BOUNDARY = "arn:aws:iam::123456789012:policy/platform/DeveloperBoundary"
EXTERNAL_TOPIC = "arn:aws:sns:us-east-1:123456789012:platform-alerts"
KEY = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
ALERT_TOPIC_OF_THE_STACK = {"Ref": "AlertTopic"}
ALERT_TOPIC_GIVEN = {"Ref": "AlertTopicArn"}


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_template()


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


# What SAM turns the template into (Globals merged, SAM resources expanded), printed as JSON by the
# tools venv, which has SAM's translator. CodeUri must be an S3 URI before translation, as `sam
# validate` does it too.
_TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

class NoManagedPolicies:
    def load(self):
        return {}

template = yaml_parse(open(sys.argv[1]).read())
for resource in template["Resources"].values():
    if resource["Type"] == "AWS::Serverless::Function":
        resource["Properties"]["CodeUri"] = "s3://bucket/key"
print(json.dumps(transform(template, {}, NoManagedPolicies())))
"""


@pytest.fixture(scope="session")
def transformed(tools: Tools) -> dict[str, Any]:
    result = tools.run("python", "-c", _TRANSFORM, str(TEMPLATE_PATH))
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert isinstance(loaded, dict)
    return loaded


def test_globals_merge_as_sam_merges_them(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    # Given SAM's own translation of the template
    for logical_id in functions(template):
        # When a function's properties are read through this folder's Globals merge
        mine = function_properties(template, logical_id)
        sams = transformed["Resources"][logical_id]["Properties"]
        # Then they agree with SAM's, so the checks below see what deploys
        for key in ("Runtime", "Architectures", "MemorySize", "Timeout", "Handler", "Environment"):
            assert mine[key] == sams[key], f"{logical_id}.{key}"


# --- Least privilege -------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", [FUNCTION_ID, HEALTH_ID])
def test_each_function_uses_its_own_reviewed_role(
    template: dict[str, Any], function_id: str
) -> None:
    # Given a function definition
    props = function_properties(template, function_id)
    # When its permissions are looked up
    # Then they come from its reviewed role, not from SAM policy templates, and its name is fixed
    assert props["Role"] == {"Fn::GetAtt": [ROLES[function_id], "Arn"]}
    assert "Policies" not in props
    assert props["FunctionName"] == {
        "Fn::Sub": FUNCTION_NAME_SUB if function_id == FUNCTION_ID else HEALTH_NAME_SUB
    }


def _is_admin_read(statement: dict[str, Any]) -> bool:
    """The one Secrets Manager grant without the rotation condition: reading admin secrets."""
    return statement.get("Sid") == "ReadNamedAdminSecrets"


def _is_list_secrets(statement: dict[str, Any]) -> bool:
    """ListSecrets has no resource scope (AWS offers none); it returns no secret values."""
    return as_list(statement["Action"]) == ["secretsmanager:ListSecrets"]


def test_secretsmanager_access_requires_the_rotator_as_rotation_function(
    template: dict[str, Any],
) -> None:
    # Given every identity-policy statement that mentions a Secrets Manager action, except the
    # admin-secret read and ListSecrets (both checked on their own below)
    statements = [
        (logical_id, statement)
        for logical_id, statement in identity_statements(template)
        if any(str(a).lower().startswith("secretsmanager:") for a in as_list(statement["Action"]))
        and not _is_admin_read(statement)
        and not _is_list_secrets(statement)
    ]
    assert {logical_id for logical_id, _ in statements} == set(SECRET_ACTIONS)
    for logical_id, statement in statements:
        # When its resource and condition are read
        resources = as_list(statement["Resource"])
        condition = statement.get("Condition", {}).get("StringEquals", {})
        # Then it never names every resource, and it only applies to secrets that name the
        # rotator (by the ARN built from its fixed name) as their rotation function
        assert "*" not in resources, f"{logical_id}: {statement}"
        assert condition.get(ROTATION_LAMBDA_KEY) == {"Fn::Sub": FUNCTION_ARN_SUB}, (
            f"{logical_id}: Secrets Manager access without the {ROTATION_LAMBDA_KEY} condition"
        )
        assert statement["Effect"] == "Allow"
        assert set(as_list(statement["Action"])) <= SECRET_ACTIONS[logical_id]
        assert "NotResource" not in statement


def test_only_the_health_check_lists_secrets_and_only_that_unscoped(
    template: dict[str, Any],
) -> None:
    # Given every statement with a Resource of "*"
    unscoped = [
        (logical_id, statement)
        for logical_id, statement in identity_statements(template)
        if "*" in as_list(statement.get("Resource", []))
    ]
    # When their actions are read
    # Then the one such grant is the health check's ListSecrets, which AWS cannot scope
    assert [(logical_id, as_list(s["Action"])) for logical_id, s in unscoped] == [
        ("HealthCheckRole", ["secretsmanager:ListSecrets"])
    ]


def test_health_role_grants_exactly_the_contract(template: dict[str, Any]) -> None:
    # Given the health check's role with every optional grant switched on
    stack = deployment(
        template,
        KmsKeyArn=KEY,
        AdminSecretArns="arn:aws:secretsmanager:us-east-1:123456789012:secret:cekura/admin-AbCdEf",
        SubnetIds="subnet-0123456789abcdef0",
        SecurityGroupIds="sg-0123456789abcdef0",
    )
    # When its statements are grouped by action
    granted = {
        action: statement
        for statement in role_statements(stack, "HealthCheckRole")
        for action in as_list(statement["Action"])
    }
    # Then it has what the contract lists and nothing else: list, check and heal secrets that name
    # the rotator, invoke the rotator (RotateSecret needs it), its cursor, its logs, and the key
    # and admin secrets exactly as the rotator has them
    assert set(granted) == SECRET_ACTIONS["HealthCheckRole"] | {
        "secretsmanager:ListSecrets",
        "lambda:InvokeFunction",
        "ssm:GetParameter",
        "ssm:PutParameter",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:GenerateDataKey",
    }
    assert granted["lambda:InvokeFunction"]["Resource"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert granted["ssm:PutParameter"]["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
        "${HealthCursorParameter}"
    }
    assert granted["logs:PutLogEvents"]["Resource"] == {
        "Fn::GetAtt": ["HealthCheckLogGroup", "Arn"]
    }
    rotator = role_statements(stack, "RotatorRole")
    health = role_statements(stack, "HealthCheckRole")
    for sid in ("UseKeyThroughSecretsManager", "ReadNamedAdminSecrets"):
        assert [s for s in health if s.get("Sid") == sid] == [
            s for s in rotator if s.get("Sid") == sid
        ], sid
    health_role = stack.resources()["HealthCheckRole"]["Properties"]
    rotator_role = stack.resources()["RotatorRole"]["Properties"]
    assert health_role["ManagedPolicyArns"] == rotator_role["ManagedPolicyArns"]


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
    assert not given.refused()

    for role in ROLES.values():
        # When each role's statements are resolved for each
        default_statements = role_statements(default, role)
        given_statements = role_statements(given, role)

        # Then by default nothing outside the rotation grant reads a secret, and no KMS is granted
        assert not default.condition("HasAdminSecrets")
        assert not [s for s in default_statements if _is_admin_read(s)]
        assert not [
            s
            for s in default_statements
            if any(str(a).startswith("kms:") for a in as_list(s["Action"]))
        ]
        # And with admin secrets, one statement reads exactly the named ARNs, read-only
        assert given.condition("HasAdminSecrets")
        (read,) = [s for s in given_statements if _is_admin_read(s)]
        assert read["Effect"] == "Allow"
        assert as_list(read["Action"]) == ["secretsmanager:GetSecretValue"]
        assert read["Resource"] == {"Ref": "AdminSecretArns"}
        assert given.params["AdminSecretArns"] == admin
        assert "Condition" not in read
        # And KMS may only decrypt, only through Secrets Manager, only for those secrets
        (kms,) = [
            s
            for s in given_statements
            if any(str(a).startswith("kms:") for a in as_list(s["Action"]))
        ]
        assert as_list(kms["Action"]) == ["kms:Decrypt"]
        assert kms["Condition"]["StringEquals"] == {
            "kms:ViaService": {"Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"},
            "kms:EncryptionContext:SecretARN": {"Ref": "AdminSecretArns"},
        }
        assert kms["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:*:key/*"}


def test_no_identity_policy_grants_wildcard_actions(template: dict[str, Any]) -> None:
    # Given every identity-policy statement of both roles
    statements = list(identity_statements(template))
    assert {logical_id for logical_id, _ in statements} == set(ROLES.values())
    for logical_id, statement in statements:
        # When its actions are read
        actions = [str(a) for a in as_list(statement.get("Action", []))]
        # Then none is a wildcard and NotAction (an implicit wildcard) is not used
        assert "NotAction" not in statement, f"{logical_id}: {statement}"
        wildcards = [a for a in actions if "*" in a]
        assert not wildcards, f"{logical_id} grants {wildcards}"


def test_kms_use_only_with_a_given_key_and_only_through_secrets_manager(
    template: dict[str, Any],
) -> None:
    # Given both roles' statements with and without KmsKeyArn
    def kms_statements(role: str, **params: str) -> list[dict[str, Any]]:
        return [
            statement
            for statement in role_statements(deployment(template, **params), role)
            if any(str(a).startswith("kms:") for a in as_list(statement["Action"]))
        ]

    for role in ROLES.values():
        # When the stack is deployed without and with a key (the admin grant is checked above)
        without_key = kms_statements(role)
        with_key = kms_statements(role, KmsKeyArn=KEY)
        # Then KMS is granted only for the given key, and only via Secrets Manager in this region
        assert without_key == [], role
        assert with_key, role
        for statement in with_key:
            assert statement["Resource"] == {"Ref": "KmsKeyArn"}
            assert statement["Condition"]["StringEquals"]["kms:ViaService"] == {
                "Fn::Sub": "secretsmanager.${AWS::Region}.amazonaws.com"
            }
            assert "kms:Encrypt" not in statement["Action"]


def test_logs_are_written_only_to_each_functions_own_log_group(template: dict[str, Any]) -> None:
    for function_id, role in ROLES.items():
        # Given a function's log group and the log statements of its role
        log_group = template["Resources"][LOG_GROUPS[function_id]]["Properties"]
        name = function_properties(template, function_id)["FunctionName"]["Fn::Sub"]
        statements = [
            s
            for logical_id, s in identity_statements(template)
            if logical_id == role and any(str(a).startswith("logs:") for a in as_list(s["Action"]))
        ]
        # When their targets are compared
        # Then logs go to /aws/lambda/<function name> only, which the stack owns, so neither
        # function can create log groups elsewhere
        assert log_group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/" + name}
        assert statements
        for statement in statements:
            assert statement["Resource"] == {"Fn::GetAtt": [LOG_GROUPS[function_id], "Arn"]}
            assert "logs:CreateLogGroup" not in statement["Action"]


def test_only_secrets_manager_and_the_schedule_may_invoke(template: dict[str, Any]) -> None:
    # Given the Lambda permissions in the template
    permissions = {
        logical_id: r["Properties"]
        for logical_id, r in template["Resources"].items()
        if r["Type"] == "AWS::Lambda::Permission"
    }
    # When their principals are read
    # Then Secrets Manager may invoke the rotator from this account, and EventBridge the health
    # check, from its schedule rule only
    assert set(permissions) == {"SecretsManagerInvokePermission", "HealthCheckSchedulePermission"}
    rotation = permissions["SecretsManagerInvokePermission"]
    assert rotation["Principal"] == "secretsmanager.amazonaws.com"
    assert rotation["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert rotation["FunctionName"] == {"Fn::GetAtt": [FUNCTION_ID, "Arn"]}
    assert rotation["Action"] == "lambda:InvokeFunction"
    schedule = permissions["HealthCheckSchedulePermission"]
    assert schedule["Principal"] == "events.amazonaws.com"
    assert schedule["SourceArn"] == {"Fn::GetAtt": ["HealthCheckScheduleRule", "Arn"]}
    assert schedule["FunctionName"] == {"Fn::GetAtt": [HEALTH_ID, "Arn"]}


# --- Permissions boundary --------------------------------------------------------------------


def test_every_role_takes_the_permissions_boundary_when_given(template: dict[str, Any]) -> None:
    # Given the stack without and with a boundary
    without = deployment(template)
    given = deployment(template, PermissionsBoundary=BOUNDARY)
    assert not given.refused()

    # When the roles each creates are listed
    def roles(stack: Deployment) -> dict[str, dict[str, Any]]:
        return {
            logical_id: r["Properties"]
            for logical_id, r in stack.resources().items()
            if r["Type"] == "AWS::IAM::Role"
        }

    # Then both stacks create both roles; with the parameter every role has the boundary, and
    # without it none has one
    assert set(roles(without)) == set(roles(given)) == set(ROLES.values())
    for props in roles(given).values():
        assert props["PermissionsBoundary"] == {"Ref": "PermissionsBoundary"}
    for props in roles(without).values():
        assert "PermissionsBoundary" not in props


def test_sam_creates_no_role_of_its_own(transformed: dict[str, Any]) -> None:
    # Given the template as SAM expands it (a function without Role, or a SAM event source,
    # would add a role here that no boundary reaches)
    resources = transformed["Resources"]
    # When its roles are listed
    roles = {logical_id for logical_id, r in resources.items() if r["Type"] == "AWS::IAM::Role"}
    # Then they are the two roles this template declares, each with the boundary when given
    assert roles == set(ROLES.values())
    for role in roles:
        boundary = resources[role]["Properties"]["PermissionsBoundary"]
        assert boundary == {
            "Fn::If": [
                "HasPermissionsBoundary",
                {"Ref": "PermissionsBoundary"},
                {"Ref": "AWS::NoValue"},
            ]
        }


# --- Alert topic -----------------------------------------------------------------------------


def _alert_targets(stack: Deployment) -> dict[str, Any]:
    """Where each alarm and the RotationFailed rule send their alerts."""
    resources = stack.resources()
    targets = {
        logical_id: r["Properties"]["AlarmActions"]
        for logical_id, r in resources.items()
        if r["Type"] == "AWS::CloudWatch::Alarm"
    }
    targets["RotationFailedRule"] = [
        t["Arn"] for t in resources["RotationFailedRule"]["Properties"]["Targets"]
    ]
    return targets


def test_without_alert_topic_arn_the_stack_creates_and_guards_its_own_topic(
    template: dict[str, Any],
) -> None:
    # Given the stack with its defaults and an alarm e-mail address
    stack = deployment(template, AlarmEmail="ops@example.com")
    resources = stack.resources()
    # When the alert wiring is resolved
    policy = resources["AlertTopicPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    publishers = {
        s["Principal"]["Service"]: s["Condition"]["ArnEquals"]["aws:SourceArn"]
        for s in policy
        if s["Effect"] == "Allow"
    }
    alarms = [a for a, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    key_policy = resources["StackKey"]["Properties"]["KeyPolicy"]["Statement"]
    # Then every alarm and the rule publish to the stack's topic, the topic accepts exactly
    # those sources, the address is subscribed, and the stack key lets the publishers encrypt
    for source, target in _alert_targets(stack).items():
        assert target == [ALERT_TOPIC_OF_THE_STACK], source
    assert publishers == {
        "events.amazonaws.com": {"Fn::GetAtt": ["RotationFailedRule", "Arn"]},
        "cloudwatch.amazonaws.com": [{"Fn::GetAtt": [a, "Arn"]} for a in alarms],
    }
    assert resources["AlertEmailSubscription"]["Properties"] == {
        "TopicArn": ALERT_TOPIC_OF_THE_STACK,
        "Protocol": "email",
        "Endpoint": {"Ref": "AlarmEmail"},
    }
    assert "AlertPublishersEncrypt" in [s["Sid"] for s in key_policy]
    assert stack.outputs()["AlertTopicArn"]["Value"] == ALERT_TOPIC_OF_THE_STACK


def test_with_alert_topic_arn_every_alert_goes_there_and_no_topic_is_made(
    template: dict[str, Any],
) -> None:
    # Given an existing topic
    stack = deployment(template, AlertTopicArn=EXTERNAL_TOPIC)
    assert not stack.refused()
    # When the stack is resolved
    resources = stack.resources()
    types = {r["Type"] for r in resources.values()}
    key_policy = resources["StackKey"]["Properties"]["KeyPolicy"]["Statement"]
    # Then it creates no topic, subscription or topic policy; every alarm and the rule publish to
    # the given topic; the stack key (still made for the log groups) grants the publishers nothing
    assert not {"AWS::SNS::Topic", "AWS::SNS::Subscription", "AWS::SNS::TopicPolicy"} & types
    targets = _alert_targets(stack)
    alarms = [a for a, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert set(targets) == {*alarms, "RotationFailedRule"}
    for source, target in targets.items():
        assert target == [ALERT_TOPIC_GIVEN], source
    assert [s["Sid"] for s in key_policy] == [
        "AccountAdministersKeyThroughIam",
        "LogsEncryptOwnLogGroups",
    ]
    assert stack.outputs()["AlertTopicArn"]["Value"] == ALERT_TOPIC_GIVEN


def test_alarm_email_with_an_external_topic_is_refused(template: dict[str, Any]) -> None:
    # Given both an existing topic and an e-mail address (which would subscribe to no topic)
    both = deployment(template, AlertTopicArn=EXTERNAL_TOPIC, AlarmEmail="ops@example.com")
    email_only = deployment(template, AlarmEmail="ops@example.com")
    # When CloudFormation checks the rules
    # Then it refuses the pair, and nothing would subscribe anyway
    assert [f for f in both.refused() if f.startswith("AlarmEmailNeedsTheStacksTopic")]
    assert "AlertEmailSubscription" not in both.resources()
    assert not email_only.refused()
    assert "AlertEmailSubscription" in email_only.resources()


# --- Conditional resources -------------------------------------------------------------------


def test_defaults_deploy_without_vpc_secret_email_or_boundary(template: dict[str, Any]) -> None:
    # Given every parameter at its default
    stack = deployment(template)
    assert not stack.refused()
    # When CloudFormation resolves the conditions
    resources = stack.resources()
    function = resources[FUNCTION_ID]["Properties"]
    health = resources[HEALTH_ID]["Properties"]
    # Then there is no VPC, managed secret or e-mail subscription; concurrency stays reserved;
    # the health check runs hourly
    for props in (function, health):
        assert "VpcConfig" not in props
    for role in ROLES.values():
        assert "ManagedPolicyArns" not in resources[role]["Properties"]
    assert not {"ManagedSecret", "ManagedSecretRotation", "AlertEmailSubscription"} & set(resources)
    assert "ManagedSecretArn" not in stack.outputs()
    assert function["ReservedConcurrentExecutions"] == {"Ref": "MaxConcurrentRotations"}
    assert health["ReservedConcurrentExecutions"] == 1
    assert stack.params["MaxConcurrentRotations"] == "10"
    assert resources["HealthCheckScheduleRule"]["Properties"]["ScheduleExpression"] == {
        "Ref": "HealthCheckSchedule"
    }
    assert stack.params["HealthCheckSchedule"] == "rate(1 hour)"


@pytest.mark.parametrize(
    ("subnets", "groups", "in_vpc"),
    [
        ("subnet-0123456789abcdef0,subnet-0123456789abcdef1", "sg-01234567", True),
        ("subnet-01234567", "", False),
        ("", "sg-01234567", False),
    ],
)
def test_vpc_config_only_when_subnets_and_groups_are_given(
    template: dict[str, Any], subnets: str, groups: str, in_vpc: bool
) -> None:
    # Given subnets and security groups, possibly only one of them
    stack = deployment(template, SubnetIds=subnets, SecurityGroupIds=groups)
    assert not stack.refused()
    # When the functions and roles are resolved
    resources = stack.resources()
    for function_id, role_id in ROLES.items():
        function = resources[function_id]["Properties"]
        role = resources[role_id]["Properties"]
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
    assert "SecretsManagerInvokePermission" in as_list(schedule["DependsOn"])
    assert secret["DeletionPolicy"] == "Retain"
    assert "bootstrap replaces this" in secret["Properties"]["SecretString"]
    assert "ManagedSecretArn" in stack.outputs()


@pytest.mark.parametrize("value", ["0", ""])
def test_zero_or_empty_concurrency_leaves_both_functions_unreserved(
    template: dict[str, Any], value: str
) -> None:
    # Given MaxConcurrentRotations switched off
    stack = deployment(template, MaxConcurrentRotations=value)
    # When the functions are resolved
    resources = stack.resources()
    # Then no concurrency is reserved (CloudFormation would reject 0 as "stop the function")
    for function_id in ROLES:
        assert "ReservedConcurrentExecutions" not in resources[function_id]["Properties"]


def test_customer_key_replaces_the_stack_key_everywhere(template: dict[str, Any]) -> None:
    # Given the stack with and without a customer managed key
    default = deployment(template, ManagedSecretName="s").resources()
    custom = deployment(template, ManagedSecretName="s", KmsKeyArn=KEY).resources()
    # When the encrypted resources are compared
    # Then without a key the stack creates its own (never aws/sns, which EventBridge and CloudWatch
    # cannot publish through); with a key every encrypted resource uses it
    assert "StackKey" in default
    assert "StackKey" not in custom
    stack_key = {"Fn::GetAtt": ["StackKey", "Arn"]}
    given = {"Ref": "KmsKeyArn"}
    assert default["AlertTopic"]["Properties"]["KmsMasterKeyId"] == stack_key
    assert custom["AlertTopic"]["Properties"]["KmsMasterKeyId"] == given
    for log_group in LOG_GROUPS.values():
        assert default[log_group]["Properties"]["KmsKeyId"] == stack_key
        assert custom[log_group]["Properties"]["KmsKeyId"] == given
    assert "KmsKeyId" not in default["ManagedSecret"]["Properties"]
    assert custom["ManagedSecret"]["Properties"]["KmsKeyId"] == given


def test_stack_key_lets_logs_encrypt_exactly_both_log_groups(template: dict[str, Any]) -> None:
    # Given the stack key's policy
    statements = deployment(template).resources()["StackKey"]["Properties"]["KeyPolicy"][
        "Statement"
    ]
    (logs,) = [s for s in statements if s["Sid"] == "LogsEncryptOwnLogGroups"]
    # When the log groups it admits are compared with the stack's log groups
    admitted = logs["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:logs:arn"]
    names = [
        template["Resources"][g]["Properties"]["LogGroupName"]["Fn::Sub"]
        for g in LOG_GROUPS.values()
    ]
    # Then it admits each of them and nothing else
    prefix = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"
    assert admitted == [{"Fn::Sub": prefix + name} for name in names]


# --- Functions and the health check ----------------------------------------------------------


def test_function_runtime_and_environment(template: dict[str, Any]) -> None:
    # Given the rotation function as SAM deploys it
    props = function_properties(template, FUNCTION_ID)
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
    assert env["POWERTOOLS_SERVICE_NAME"] == {"Ref": "AWS::StackName"}
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == {
        "Fn::FindInMap": ["Metrics", "Names", "Namespace"]
    }
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert template["Parameters"]["LogLevel"]["Default"] == "INFO"


def test_admin_secret_environment_comes_from_the_parameter(template: dict[str, Any]) -> None:
    # Given the rotation function's environment
    env = function_properties(template, FUNCTION_ID)["Environment"]["Variables"]
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


def test_health_check_runs_the_same_package_with_the_rotators_settings(
    template: dict[str, Any],
) -> None:
    # Given both functions as SAM deploys them
    rotator = function_properties(template, FUNCTION_ID)
    health = function_properties(template, HEALTH_ID)
    env = health["Environment"]["Variables"]
    # When the health check's code, limits and environment are read
    extra = {k: v for k, v in env.items() if k not in rotator["Environment"]["Variables"]}
    # Then it is the same code and runtime at another entry point, with every rotator variable at
    # the same value plus its own four (the contract in the plan of issue 15)
    for key in ("CodeUri", "Runtime", "Architectures", "MemorySize"):
        assert health[key] == rotator[key], key
    assert template["Resources"][HEALTH_ID]["Metadata"]["BuildMethod"] == "makefile"
    assert health["Handler"] == "cekura_rotator.health.lambda_handler"
    assert (health["Timeout"], health["MemorySize"]) == (300, 256)
    for key, value in rotator["Environment"]["Variables"].items():
        assert env[key] == value, key
    assert extra == {
        "ROTATION_FUNCTION_ARN": {"Fn::GetAtt": [FUNCTION_ID, "Arn"]},
        "STUCK_ROTATION_HOURS": {"Ref": "StuckRotationHours"},
        "HEAL_DEAD_KEYS": {"Ref": "HealDeadKeys"},
        "HEALTH_CURSOR_PARAMETER": {"Ref": "HealthCursorParameter"},
    }
    params = template["Parameters"]
    assert (params["StuckRotationHours"]["Default"], params["HealDeadKeys"]["Default"]) == (
        4,
        "true",
    )


def test_health_cursor_is_a_string_parameter_starting_empty(template: dict[str, Any]) -> None:
    # Given the cursor parameter
    cursor = template["Resources"]["HealthCursorParameter"]
    # When it is read
    # Then it is an SSM String named after the stack, holding "-" (start from the beginning)
    assert cursor["Type"] == "AWS::SSM::Parameter"
    assert cursor["Properties"]["Type"] == "String"
    assert cursor["Properties"]["Value"] == "-"
    assert cursor["Properties"]["Name"] == {"Fn::Sub": "/${AWS::StackName}/health-cursor"}


@pytest.mark.parametrize(
    ("schedule", "scheduled"), [("rate(1 hour)", True), ("", False), ("cron(0 6 * * ? *)", True)]
)
def test_empty_health_check_schedule_disables_it(
    template: dict[str, Any], schedule: str, scheduled: bool
) -> None:
    # Given a health check schedule, or none
    stack = deployment(template, HealthCheckSchedule=schedule)
    assert not stack.refused()
    # When the stack is resolved
    resources = stack.resources()
    # Then the rule and its permission exist only with a schedule; the function exists always
    assert ("HealthCheckScheduleRule" in resources) is scheduled
    assert ("HealthCheckSchedulePermission" in resources) is scheduled
    assert HEALTH_ID in resources
    if scheduled:
        rule = resources["HealthCheckScheduleRule"]["Properties"]
        assert rule["Targets"] == [
            {"Id": "health-check", "Arn": {"Fn::GetAtt": [HEALTH_ID, "Arn"]}}
        ]
        assert rule["State"] == "ENABLED"


def test_parameter_defaults_are_safe(template: dict[str, Any]) -> None:
    # Given the parameter declarations
    params = template["Parameters"]
    # When the defaults are deployed
    # Then CloudFormation accepts them, and they are the documented, conservative ones
    assert deployment(template).refused() == []
    assert params["CekuraApiUrl"]["Default"] == "https://api.cekura.ai"
    assert params["RevocationPolicy"]["Default"] == "grace"
    assert params["RotationSchedule"]["Default"] == "rate(30 days)"
    assert params["LogRetentionDays"]["Default"] == 90
    assert params["PermissionsBoundary"]["Default"] == ""
    assert params["AlertTopicArn"]["Default"] == ""


def test_every_parameter_is_in_one_console_group(template: dict[str, Any]) -> None:
    # Given the console's parameter groups
    groups = template["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
    # When their members are listed
    listed = [name for group in groups for name in group["Parameters"]]
    # Then each parameter appears exactly once, so the console shows every one
    assert sorted(listed) == sorted(template["Parameters"])


def test_rotation_failures_reach_the_alert_topic(template: dict[str, Any]) -> None:
    # Given the EventBridge rule and the errors alarm
    resources = template["Resources"]
    rule = resources["RotationFailedRule"]["Properties"]
    alarm = resources["RotatorErrorsAlarm"]["Properties"]
    # When their wiring is read
    # Then failed rotations and function errors are what they watch
    assert rule["EventPattern"]["source"] == ["aws.secretsmanager"]
    assert rule["EventPattern"]["detail-type"] == ["AWS Service Event via CloudTrail"]
    assert rule["EventPattern"]["detail"]["eventName"] == ["RotationFailed"]
    assert alarm["MetricName"] == "Errors"
    assert alarm["Namespace"] == "AWS/Lambda"
    assert alarm["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": FUNCTION_ID}}]
    assert (alarm["Threshold"], alarm["Period"]) == (1, 300)
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["TreatMissingData"] == "notBreaching"


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
    assert {
        "RotatorFunctionArn",
        "RotatorRoleArn",
        "HealthCheckFunctionArn",
        "AlertTopicArn",
        "ManagedSecretArn",
        "DashboardUrl",
    } <= set(outputs)


# --- Operating from the console ---------------------------------------------------------------

# The metrics each module emits under the namespace and service the template sets.
EMITTED_METRICS = {
    "rotator": (
        "StepSucceeded",
        "StepFailed",
        "KeysMinted",
        "KeysRevoked",
        "RevocationsRefused",
        "RevocationsFailed",
        "RevocationsOwed",
        "StraysDeleted",
    ),
    # The contract of issue 15 (the plan's "Health check function contract").
    "health": (
        "CurrentKeyRejected",
        "RotationsStuck",
        "RotationsOverdue",
        "FleetRevocationsOwed",
        "FleetRevocationsManual",
        "HealthSecretsChecked",
        "HealthUnfinished",
        "HealsStarted",
        "HealSuppressed",
    ),
}
ALL_METRICS = tuple(m for names in EMITTED_METRICS.values() for m in names)
# Alarm -> (metric, statistic, threshold, dimensions besides service)
METRIC_ALARMS = {
    "RevocationsOwedAlarm": (
        "RevocationsOwed",
        "Maximum",
        {"Ref": "RevocationsOwedAlarmThreshold"},
        {"Step": "finishSecret"},
    ),
    "RevocationsRefusedAlarm": (
        "RevocationsRefused",
        "Sum",
        {"Ref": "RevocationsRefusedAlarmThreshold"},
        {"Step": "finishSecret"},
    ),
    "CurrentKeyRejectedAlarm": ("CurrentKeyRejected", "Maximum", 1, {}),
    "RotationsStuckAlarm": ("RotationsStuck", "Maximum", 1, {}),
    "RotationsOverdueAlarm": ("RotationsOverdue", "Maximum", 1, {}),
}
SERVICE = {"Ref": "AWS::StackName"}


def _dashboard(template: dict[str, Any], stack_name: str = "stack") -> dict[str, Any]:
    """The dashboard body as CloudWatch receives it, with every ${...} filled in."""
    variables = template["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"][1]
    assert variables == {
        "Namespace": {"Fn::FindInMap": ["Metrics", "Names", "Namespace"]},
        "Service": SERVICE,
    }
    return render_dashboard(template, stack_name, deployment(template).params)


@pytest.mark.parametrize("module", sorted(EMITTED_METRICS))
def test_code_emits_every_metric_the_console_reads(module: str) -> None:
    # Given the source of the code that emits these metrics (the health check is the health
    # package, the rotator every other file of the function's package; read as text, never
    # imported)
    package = REPO_ROOT / "lambda" / "cekura_rotator"
    health = package / "health"
    everything = sorted(package.rglob("*.py"))
    if module == "health":
        sources = [p for p in everything if p.is_relative_to(health)]
    else:
        sources = [p for p in everything if not p.is_relative_to(health)]
    assert sources, f"no source found for {module}"
    code = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    # When each metric the dashboard and alarms read is looked up
    missing = [name for name in EMITTED_METRICS[module] if f'"{name}"' not in code]
    # Then the code names it: a renamed metric would leave a widget or an alarm silently empty
    assert not missing, f"metrics the template reads but {module} never emits: {missing}"


def test_metric_names_follow_the_stack_and_match_the_codes_fallbacks(
    template: dict[str, Any],
) -> None:
    # Given the template's metric names, the code's fall-backs and the default stack name
    from cekura_rotator import observability

    env = function_properties(template, FUNCTION_ID)["Environment"]["Variables"]
    samconfig = tomllib.loads((REPO_ROOT / "samconfig.toml").read_text(encoding="utf-8"))
    # When they are compared
    # Then the namespace (which the environment, dashboard and alarms use) is the code's default,
    # and the service is the stack's name: under samconfig.toml's default stack name it is the
    # code's default service too, so a default deployment keeps the metrics it always had
    assert template["Mappings"]["Metrics"]["Names"] == {
        "Namespace": observability.DEFAULT_NAMESPACE
    }
    assert env["POWERTOOLS_SERVICE_NAME"] == SERVICE
    stack_name = samconfig["default"]["global"]["parameters"]["stack_name"]
    assert stack_name == observability.DEFAULT_SERVICE


@pytest.mark.parametrize("alarm", sorted(METRIC_ALARMS))
def test_metric_alarms_watch_the_emitted_metric_past_a_threshold(
    template: dict[str, Any], alarm: str
) -> None:
    # Given one of the alarms on the functions' own metrics
    metric, statistic, threshold, dimensions = METRIC_ALARMS[alarm]
    props = template["Resources"][alarm]["Properties"]
    # When its metric and threshold are read
    read = {d["Name"]: d["Value"] for d in props["Dimensions"]}
    # Then it reads the metric exactly as Powertools publishes it (namespace, the stack's service
    # dimension, and the step where there is one), fires at the threshold, and alerts
    assert props["Namespace"] == {"Fn::FindInMap": ["Metrics", "Names", "Namespace"]}
    assert props["MetricName"] == metric
    assert read == {"service": SERVICE, **dimensions}
    assert props["Statistic"] == statistic
    assert props["Threshold"] == threshold
    assert props["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert props["TreatMissingData"] == "notBreaching"
    for value in alternatives(props["AlarmActions"][0]):
        assert value in (ALERT_TOPIC_OF_THE_STACK, ALERT_TOPIC_GIVEN)
    if isinstance(threshold, dict):
        param = template["Parameters"][threshold["Ref"]]
        assert (param["Type"], param["Default"], param["MinValue"]) == ("Number", 1, 1)


def test_dashboard_shows_steps_keys_revocations_health_duration_and_alarms(
    template: dict[str, Any],
) -> None:
    # Given the dashboard as CloudWatch would receive it for a stack named "stack"
    widgets = _dashboard(template)["widgets"]
    namespace = template["Mappings"]["Metrics"]["Names"]["Namespace"]
    # When the metrics its widgets read are collected
    series = [m for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    searched = " ".join(m[0]["expression"] for m in series if isinstance(m[0], dict))
    plain = [m for m in series if isinstance(m[0], str)]
    own = {(m[0], m[1]) for m in plain}
    lambda_metrics = {(m[1], m[3]) for m in plain if m[0] == "AWS/Lambda"}
    alarms = [w for w in widgets if w["type"] == "alarm"]
    # Then every emitted metric, the rotator's and the health check's, is shown, always under
    # the template's namespace and this stack's service
    for metric in ALL_METRICS:
        assert f'MetricName="{metric}"' in searched or (namespace, metric) in own, metric
    assert searched.count(f"{{{namespace},Step,service}}") == searched.count("SEARCH(")
    assert searched.count('service="stack"') == searched.count("SEARCH(")
    for m in plain:
        if m[0] == namespace:
            assert m[2:4] == ["service", "stack"], m
    # And both functions' duration and errors, and every alarm
    assert {("Duration", "stack-rotator"), ("Duration", "stack-health")} <= lambda_metrics
    assert {("Errors", "stack-rotator"), ("Errors", "stack-health")} <= lambda_metrics
    assert len(alarms) == 1
    names = physical_names(template, "stack", deployment(template).params)
    every_alarm = [
        names[a] for a, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"
    ]
    assert sorted(a.rsplit(":", 1)[1] for a in alarms[0]["properties"]["alarms"]) == sorted(
        every_alarm
    )
    # And the log table reads both functions' log groups
    (logs,) = [w for w in widgets if w["type"] == "log"]
    assert "SOURCE '/aws/lambda/stack-rotator'" in logs["properties"]["query"]
    assert "SOURCE '/aws/lambda/stack-health'" in logs["properties"]["query"]
    # And every widget fits the 24-column grid, without overlapping another
    cells: set[tuple[int, int]] = set()
    for widget in widgets:
        assert widget["x"] >= 0
        assert widget["x"] + widget["width"] <= 24
        area = {
            (x, y)
            for x in range(widget["x"], widget["x"] + widget["width"])
            for y in range(widget["y"], widget["y"] + widget["height"])
        }
        assert not area & cells, f"{widget['properties'].get('title')} overlaps another widget"
        cells |= area


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
    # Then the dependencies are read from requirements.txt, the one manifest the Lambda build
    # installs, plus the AWS SDK that the Lambda runtime provides to the function, and each
    # package comes from its own root
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
