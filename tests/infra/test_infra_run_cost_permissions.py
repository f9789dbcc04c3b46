"""FinalizeRun and ReapOrphans (the functions that end runs) may read spot prices and the
attempts' metrics files; no other function may."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _statements_granting(synthesized, action):
    """{function name: [statements granting `action`]} over every runctl Lambda's role."""
    functions = {
        **synthesized.stack.orchestration.functions,
        **synthesized.stack.instance_events.functions,
    }
    found = {}
    for name, function in functions.items():
        for statement in synthesized.role_statements(function.role):
            if action in synthesized.listed(statement["Action"]):
                found.setdefault(name, []).append(statement)
    return found


def test_only_the_functions_that_end_runs_read_the_spot_price_history(synthesized):
    granted = _statements_granting(synthesized, "ec2:DescribeSpotPriceHistory")

    assert set(granted) == {"FinalizeRun", "ReapOrphans"}
    for statements in granted.values():
        [statement] = statements
        # The action has no resource-level permissions: '*' is its only valid Resource
        assert synthesized.listed(statement["Resource"]) == ["*"]
        assert "Condition" not in statement


@pytest.mark.parametrize("name", ["FinalizeRun", "ReapOrphans"])
def test_the_functions_that_end_runs_read_run_files_only_under_runs(synthesized, name):
    bucket_id = synthesized.logical_id(synthesized.stack.storage.bucket)

    [statement] = _statements_granting(synthesized, "s3:GetObject")[name]

    assert synthesized.listed(statement["Resource"]) == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [bucket_id, "Arn"]}, "/runs/*"]]}
    ]
