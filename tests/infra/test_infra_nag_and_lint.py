"""cdk-nag AwsSolutions and cfn-lint on the synthesized template."""

from __future__ import annotations

import pytest

from stacks.nag_acknowledgements import ACKNOWLEDGED_RULES_METADATA, MIN_REASON_LENGTH

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _acknowledgements(synthesized):
    """(construct path, rule id, reason) of every acknowledgement in the app."""
    found = []
    for construct in synthesized.app.node.find_all():
        for entry in construct.node.metadata:
            if entry.type == ACKNOWLEDGED_RULES_METADATA:
                for rule, reason in entry.data.items():
                    found.append((construct.node.path, rule, reason))
    return found


def test_aws_solutions_checks_ran_and_left_no_finding(synthesized):
    # Given the validation report written by the session's synth (which raises on findings)
    reports = {
        report["pluginName"]: report for report in synthesized.validation_report["pluginReports"]
    }

    # Then cdk-nag's AwsSolutions pack ran, and every plugin passed
    assert reports["AwsSolutions"]["violations"] == []
    assert all(report["conclusion"] == "success" for report in reports.values())


def test_every_acknowledgement_gives_a_real_reason(synthesized):
    acknowledgements = _acknowledgements(synthesized)

    assert acknowledgements
    for path, rule, reason in acknowledgements:
        assert rule.startswith("AwsSolutions::AwsSolutions-"), (path, rule)
        assert len(reason.strip()) >= MIN_REASON_LENGTH, (path, rule, reason)


def test_every_acknowledgement_covers_a_finding(synthesized):
    # Given what cdk-nag reported as acknowledged (finding id, acknowledging construct)
    [nag] = [
        report
        for report in synthesized.validation_report["pluginReports"]
        if report["pluginName"] == "AwsSolutions"
    ]
    used = {
        (item["acknowledgedAt"], item["acknowledgedId"]) for item in nag["suppressedViolations"]
    }

    # Then no acknowledgement is stale (left behind after what it excused went away)
    stale = [
        (path, rule) for path, rule, _ in _acknowledgements(synthesized) if (path, rule) not in used
    ]
    assert stale == []


def test_cfn_lint_reports_no_errors(synthesized):
    assert synthesized.cfn_lint_problems("us-east-1") == []
