"""Every template parameter refuses a mistyped value when the stack is deployed.

CloudFormation checks a value against its parameter's AllowedPattern, AllowedValues, MinLength/
MaxLength and MinValue/MaxValue before it creates anything (tests.infra.cfn.parameter_errors
applies the same rules). A typo in an ARN or a schedule is then an error at `sam deploy`, not at the
first rotation a month later. Each parameter below has typical typos that must be refused and
real values that must be accepted; a new parameter without either fails
`test_every_parameter_has_typos_and_real_values`.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.cfn import deployment, is_constrained, load_template, parameter_errors

TEMPLATE = load_template()
PARAMETERS: dict[str, Any] = TEMPLATE["Parameters"]
ACCOUNT = "123456789012"
SECRET = f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:cekura/admin-AbCdEf"

TYPOS: dict[str, list[str]] = {
    "CekuraApiUrl": [
        "http://api.cekura.ai",
        "api.cekura.ai",
        "https://",
        "https://api.cekura.ai /v1",
        "https://api.cekura.ai?key=1",
    ],
    "CekuraProjectId": ["abc", "12a", "0", "-5", "1.5", " 12"],
    "RevocationPolicy": ["Grace", "never", "false"],
    "AdminSecretArns": [
        "cekura/admin",
        f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:cekura/admin",  # no suffix
        f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "arn:aws:secretsmanager:us-east-1:1234:secret:cekura/admin-AbCdEf",
        f"arn:awz:secretsmanager:us-east-1:{ACCOUNT}:secret:cekura/admin-AbCdEf",
        f"{SECRET},cekura/other",
        f"{SECRET};{SECRET}",
    ],
    "RotationSchedule": [
        "",
        "rate(30)",
        "rate(30 weeks)",
        "rate(0 days)",
        "30 days",
        "cron(0 4 * * *)",  # five fields: Secrets Manager wants six
        "rate(30 days",
    ],
    "RotationWindow": ["3", "0h", "25h", "3 hours", "180m"],
    "HealthCheckSchedule": [
        "rate(1 hours)",
        "rate(2 hour)",
        "rate(0 minutes)",
        "rate(1 week)",
        "every hour",
        "cron(0 * * * *)",
        "rate(1hour)",
    ],
    "StuckRotationHours": ["0", "-1", "721", "four", "4h"],
    "HealDeadKeys": ["yes", "True", "1", ""],
    "KmsKeyArn": [
        "alias/aws/secretsmanager",
        f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/cekura",
        "1234abcd-12ab-34cd-56ef-1234567890ab",
        f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd",
        f"arn:aws:sns:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    ],
    "PermissionsBoundary": [
        "DeveloperBoundary",
        f"arn:aws:iam::{ACCOUNT}:role/DeveloperBoundary",
        f"arn:aws:iam:us-east-1:{ACCOUNT}:policy/DeveloperBoundary",
        "arn:aws:iam::12345:policy/DeveloperBoundary",
        f"arn:aws:iam::{ACCOUNT}:policy/",
    ],
    "SubnetIds": ["subnet-xyz", "sub-0123456789abcdef0", "subnet-0123456789abcdef0;subnet-1"],
    "SecurityGroupIds": ["sg-xyz", "default", "sg-01234567,sg-nope"],
    "AlertTopicArn": [
        "platform-alerts",
        f"arn:aws:sns:us-east-1:{ACCOUNT}:platform-alerts.fifo",
        f"arn:aws:sqs:us-east-1:{ACCOUNT}:platform-alerts",
        f"arn:aws:sns:us-east-1:{ACCOUNT}",
        f"arn:aws:sns:useast1:{ACCOUNT}:platform-alerts",
    ],
    "AlarmEmail": ["ops", "ops@", "ops@example", "ops @example.com", "a@b@example.com"],
    "ManagedSecretName": ["cekura key", "cekura/api-key!", "x" * 513],
    "LogRetentionDays": ["0", "2", "100", "ninety", "-90"],
    "LogLevel": ["info", "TRACE", "WARN"],
    "RevocationsOwedAlarmThreshold": ["0", "101", "-1", "one"],
    "RevocationsRefusedAlarmThreshold": ["0", "1001", "x"],
    "MaxConcurrentRotations": ["-1", "ten", "10000", "010", "1.5"],
}

REAL_VALUES: dict[str, list[str]] = {
    "CekuraApiUrl": ["https://api.cekura.ai", "https://cekura.internal:8443/api/"],
    "CekuraProjectId": ["", "1", "12345"],
    "RevocationPolicy": ["grace", "immediate", "off"],
    "AdminSecretArns": [
        "",
        SECRET,
        f"{SECRET}, arn:aws-us-gov:secretsmanager:us-gov-west-1:{ACCOUNT}:secret:a/b+c=d@f-123456",
        f"arn:aws-cn:secretsmanager:cn-north-1:{ACCOUNT}:secret:cekura-AbCdEf",
    ],
    "RotationSchedule": ["rate(30 days)", "rate(1 day)", "rate(12 hours)", "cron(0 4 ? * SUN *)"],
    "RotationWindow": ["1h", "3h", "24h"],
    "HealthCheckSchedule": [
        "",
        "rate(1 hour)",
        "rate(15 minutes)",
        "rate(1 day)",
        "rate(6 hours)",
        "cron(0 6 * * ? *)",
    ],
    "StuckRotationHours": ["1", "4", "720"],
    "HealDeadKeys": ["true", "false"],
    "KmsKeyArn": [
        "",
        f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        f"arn:aws-cn:kms:cn-north-1:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab",
    ],
    "PermissionsBoundary": [
        "",
        f"arn:aws:iam::{ACCOUNT}:policy/DeveloperBoundary",
        f"arn:aws-us-gov:iam::{ACCOUNT}:policy/platform/boundaries/Lambda_Boundary-v2",
        "arn:aws:iam::aws:policy/PowerUserAccess",
    ],
    "SubnetIds": ["", "subnet-01234567", "subnet-0123456789abcdef0, subnet-0123456789abcdef1"],
    "SecurityGroupIds": ["", "sg-01234567", "sg-0123456789abcdef0,sg-01234567"],
    "AlertTopicArn": [
        "",
        f"arn:aws:sns:us-east-1:{ACCOUNT}:platform-alerts",
        f"arn:aws-iso-b:sns:us-isob-east-1:{ACCOUNT}:Pager_Duty",
    ],
    "AlarmEmail": ["", "ops@example.com", "first.last+cekura@sub.example.co.uk"],
    "ManagedSecretName": ["", "cekura/api-key", "prod/voice_qa+1=x.y@z"],
    "LogRetentionDays": ["1", "90", "3653"],
    "LogLevel": ["DEBUG", "INFO", "WARNING", "ERROR"],
    "RevocationsOwedAlarmThreshold": ["1", "10", "100"],
    "RevocationsRefusedAlarmThreshold": ["1", "1000"],
    "MaxConcurrentRotations": ["", "0", "1", "10", "9999"],
}


def test_every_parameter_constrains_its_value() -> None:
    # Given every parameter of the template
    # When its constraints are read
    loose = sorted(name for name, spec in PARAMETERS.items() if not is_constrained(spec))
    unexplained = sorted(
        name
        for name, spec in PARAMETERS.items()
        if "AllowedPattern" in spec and len(spec.get("ConstraintDescription", "")) < 10
    )
    # Then each can refuse a value (a pattern, a list of values, or both bounds of a Number), and
    # every pattern says in words what it wants (CloudFormation shows the raw regex otherwise)
    assert not loose, f"parameters that accept any value: {loose}"
    assert not unexplained, f"patterns without a ConstraintDescription: {unexplained}"


def test_every_parameter_has_typos_and_real_values() -> None:
    # Given the cases below and the template's parameters
    # When they are compared
    # Then each parameter has both, so a new parameter needs its own cases
    assert sorted(TYPOS) == sorted(PARAMETERS)
    assert sorted(REAL_VALUES) == sorted(PARAMETERS)
    assert all(TYPOS.values())
    assert all(REAL_VALUES.values())


@pytest.mark.parametrize(
    ("name", "typo"), [(name, typo) for name, typos in TYPOS.items() for typo in typos]
)
def test_a_typo_is_refused_at_deploy(name: str, typo: str) -> None:
    # Given a parameter and a mistyped value
    spec = PARAMETERS[name]
    # When CloudFormation checks the value against the parameter
    errors = parameter_errors(name, spec, typo)
    # Then it refuses it, and the whole stack with it
    assert errors, f"{name} accepts {typo!r}"
    assert deployment(TEMPLATE, **{name: typo}).refused()


@pytest.mark.parametrize(
    ("name", "value"), [(name, value) for name, values in REAL_VALUES.items() for value in values]
)
def test_a_real_value_is_accepted(name: str, value: str) -> None:
    # Given a parameter and a value someone would really give
    spec = PARAMETERS[name]
    # When CloudFormation checks it
    # Then it accepts it
    assert parameter_errors(name, spec, value) == []


def test_every_default_is_accepted() -> None:
    # Given each parameter's default
    # When CloudFormation checks it
    # Then it accepts it (a default that its own constraint refuses fails every deploy)
    for name, spec in PARAMETERS.items():
        assert parameter_errors(name, spec, str(spec.get("Default", ""))) == [], name


@pytest.mark.parametrize(
    ("spec", "value", "refused"),
    [
        ({"Type": "String", "AllowedPattern": "^a+$"}, "aa", False),
        ({"Type": "String", "AllowedPattern": "a+"}, "ab", True),  # the whole value must match
        ({"Type": "String", "MaxLength": 2}, "abc", True),
        ({"Type": "Number", "MinValue": 1, "MaxValue": 3}, "3", False),
        ({"Type": "Number", "MinValue": 1, "MaxValue": 3}, "3.5", True),
        ({"Type": "Number", "AllowedValues": [1, 7]}, "7", False),
        ({"Type": "Number"}, "7 days", True),
        ({"Type": "CommaDelimitedList", "AllowedPattern": "^x-[0-9]$"}, "x-1, x-2", False),
        ({"Type": "CommaDelimitedList", "AllowedPattern": "^x-[0-9]$"}, "x-1,y-2", True),
        ({"Type": "String", "AllowedValues": ["true", "false"]}, "TRUE", True),
    ],
)
def test_the_evaluator_applies_cloudformations_rules(
    spec: dict[str, Any], value: str, refused: bool
) -> None:
    # Given a parameter declaration and a value
    # When the evaluator checks it
    # Then it refuses exactly what CloudFormation refuses
    assert bool(parameter_errors("P", spec, value)) is refused


def test_the_evaluator_refuses_to_guess_an_unknown_constraint() -> None:
    # Given a constraint the evaluator does not implement
    # When a value is checked against it
    # Then the test fails loudly instead of passing a value it could not judge
    with pytest.raises(AssertionError, match="does not know"):
        parameter_errors("P", {"Type": "String", "AllowedFormat": "x"}, "x")
