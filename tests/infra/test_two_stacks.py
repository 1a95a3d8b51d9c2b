"""Two stacks in one account and region (say one per Cekura organisation) do not collide.

The names the template gives (functions, log groups, alarms, the dashboard, the cursor
parameter), the metrics' service dimension, the alarms' and the dashboard's metrics, the policies
that name a function or a log group, and any export: each is rendered for two stack names here,
and nothing one stack creates or reads may be the other's.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.cfn import (
    NAME_PROPERTIES,
    NO_VALUE,
    UNNAMED_TYPES,
    Deployment,
    deployment,
    function_properties,
    functions,
    load_template,
    physical_names,
    render,
    render_dashboard,
)

TEMPLATE = load_template()
STACKS = ("acme-rotator", "globex")
# The one name an operator chooses per stack: two stacks given the same secret name would share
# that secret, which is their choice (the parameter says it names a secret this stack creates).
OPERATOR_NAMED = {"ManagedSecret": "ManagedSecretName"}
# The longest stack name that keeps every function name within Lambda's 64 characters.
LONGEST_STACK_NAME = 56


def _everything_on(stack_name: str) -> Deployment:
    """A stack with every optional resource created: its own topic with a subscription, a
    managed secret (named per stack, as an operator would), admin secrets and a schedule."""
    return deployment(
        TEMPLATE,
        ManagedSecretName=f"cekura/{stack_name}",
        AlarmEmail="ops@example.com",
        AdminSecretArns="arn:aws:secretsmanager:us-east-1:123456789012:secret:admin-AbCdEf",
    )


def _names(stack_name: str) -> dict[str, str]:
    stack = _everything_on(stack_name)
    assert not stack.refused()
    return physical_names(TEMPLATE, stack_name, stack.params)


def test_every_resource_type_has_a_naming_decision() -> None:
    # Given the resource types the template uses
    types = {r["Type"] for r in TEMPLATE["Resources"].values()}
    # When each is looked up
    undecided = sorted(types - set(NAME_PROPERTIES) - UNNAMED_TYPES)
    # Then each is known to carry a name (checked below) or to have none of its own
    assert not undecided, f"resource types without a naming decision: {undecided}"


def test_every_name_the_template_gives_includes_the_stack_name() -> None:
    # Given the names of one stack's resources
    names = _names(STACKS[0])
    # When each is read
    # Then it contains the stack's name, except the one the operator gives as a parameter
    assert {"RotatorFunction", "HealthCheckFunction", "Dashboard", "HealthCursorParameter"} <= set(
        names
    )
    for logical_id, name in names.items():
        if logical_id in OPERATOR_NAMED:
            param = OPERATOR_NAMED[logical_id]
            prop = NAME_PROPERTIES[TEMPLATE["Resources"][logical_id]["Type"]]
            assert TEMPLATE["Resources"][logical_id]["Properties"][prop] == {"Ref": param}
            continue
        assert STACKS[0] in name, f"{logical_id} is named {name!r}"


def test_two_stacks_share_no_name() -> None:
    # Given the resources of two stacks in one account and region
    first, second = (_names(stack) for stack in STACKS)

    # When their names are compared, type by type (names are unique per type)
    def by_type(names: dict[str, str]) -> set[tuple[str, str]]:
        return {(TEMPLATE["Resources"][i]["Type"], name) for i, name in names.items()}

    shared = by_type(first) & by_type(second)
    # Then no name of one stack is a name of the other, and neither stack names one thing twice
    assert not shared, f"both stacks create {sorted(shared)}"
    assert len(by_type(first)) == len(first)


def test_function_names_fit_lambdas_limit_for_the_longest_stack_name() -> None:
    # Given the longest stack name the template documents
    stack_name = "s" * LONGEST_STACK_NAME
    names = physical_names(TEMPLATE, stack_name, deployment(TEMPLATE).params)
    # When the function names are rendered
    # Then each fits Lambda's 64 characters
    for logical_id in functions(TEMPLATE):
        assert len(names[logical_id]) <= 64, logical_id


def _metric_reads(stack: Deployment, stack_name: str) -> Iterator[tuple[str, str, str]]:
    """(alarm, dimension, value) for every dimension an alarm reads, rendered for the stack."""
    names = physical_names(TEMPLATE, stack_name, stack.params)
    for logical_id, resource in stack.resources().items():
        if resource["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for dimension in resource["Properties"]["Dimensions"]:
            value = render(dimension["Value"], stack_name, stack.params, names)
            yield logical_id, dimension["Name"], value


@pytest.mark.parametrize("stack_name", STACKS)
def test_each_stacks_metrics_carry_its_own_service_and_its_alarms_read_only_those(
    stack_name: str,
) -> None:
    # Given one of the two stacks
    stack = _everything_on(stack_name)
    other = next(s for s in STACKS if s != stack_name)
    names = physical_names(TEMPLATE, stack_name, stack.params)
    # When the service its functions publish under and the dimensions its alarms read are rendered
    services = {
        render(
            function_properties(TEMPLATE, f)["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"],
            stack_name,
            stack.params,
        )
        for f in functions(TEMPLATE)
    }
    reads = list(_metric_reads(stack, stack_name))
    # Then both functions publish under this stack's name, and every alarm reads this stack's
    # service or this stack's functions, never the other's
    assert services == {stack_name}
    assert reads
    for alarm, dimension, value in reads:
        if dimension == "service":
            assert value == stack_name, alarm
        elif dimension == "FunctionName":
            assert value in {names[f] for f in functions(TEMPLATE)}, alarm
        else:
            assert (dimension, value) == ("Step", "finishSecret"), alarm
        assert other not in value


@pytest.mark.parametrize("stack_name", STACKS)
def test_each_dashboard_shows_only_its_own_stack(stack_name: str) -> None:
    # Given one stack's dashboard as CloudWatch receives it
    stack = _everything_on(stack_name)
    other = next(s for s in STACKS if s != stack_name)
    widgets = render_dashboard(TEMPLATE, stack_name, stack.params)["widgets"]
    # When every metric, alarm and log group it reads is collected
    series = [m for w in widgets if w["type"] == "metric" for m in w["properties"]["metrics"]]
    expressions = [m[0]["expression"] for m in series if isinstance(m[0], dict)]
    services = {m[m.index("service") + 1] for m in series if "service" in m}
    functions_read = {m[m.index("FunctionName") + 1] for m in series if "FunctionName" in m}
    alarms = [a for w in widgets if w["type"] == "alarm" for a in w["properties"]["alarms"]]
    queries = [w["properties"]["query"] for w in widgets if w["type"] == "log"]
    names = physical_names(TEMPLATE, stack_name, stack.params)
    # Then each names this stack's service, functions, alarms and log groups only
    assert services == {stack_name}
    assert all(f'service="{stack_name}"' in e for e in expressions)
    assert functions_read == {names[f] for f in functions(TEMPLATE)}
    assert alarms
    for item in [*expressions, *alarms, *queries]:
        assert other not in item
    for query in queries:
        for log_group in ("RotatorLogGroup", "HealthCheckLogGroup"):
            assert f"SOURCE '{names[log_group]}'" in query


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)


def test_policies_name_their_own_stacks_function_and_log_groups() -> None:
    # Given every ARN pattern in the roles' and the stack key's policies that names a function,
    # a log group, a parameter or the stack
    resources = _everything_on(STACKS[0]).resources()
    policies = [resources[r]["Properties"] for r in ("RotatorRole", "HealthCheckRole", "StackKey")]
    subs = [s for policy in policies for s in _strings(policy) if "${" in s]
    # When the ones that name a function or a log group are read
    naming = [s for s in subs if ":function:" in s or ":log-group:" in s]
    # Then each is built from the stack's name, so a second stack's role reaches none of these
    assert naming
    for sub in naming:
        assert "${AWS::StackName}" in sub, sub


def test_exports_are_named_after_the_stack() -> None:
    # Given the outputs (exports must be unique in a region)
    exports = [
        output["Export"]["Name"]
        for output in TEMPLATE["Outputs"].values()
        if output.get("Export", NO_VALUE) != NO_VALUE
    ]
    # When their names are rendered for two stacks
    rendered = [{render(e, s, deployment(TEMPLATE).params) for e in exports} for s in STACKS]
    # Then no export of one is an export of the other
    assert not rendered[0] & rendered[1]
