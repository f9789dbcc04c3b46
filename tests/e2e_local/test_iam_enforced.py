"""IAM in local mode: a grant missing from the synthesized template fails a whole run with
AccessDenied naming the action, as it would on AWS."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runctl.local.iam import local as iam_local
from runctl.local.session import LocalSession
from tests.e2e_local.conftest import E2E_SETTINGS, ScriptRunner

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_iam_enforced")]

LAUNCH_HANDLER = "lambdas.handlers.launch_instance.lambda_handler"


def without_action(template: dict[str, Any], handler: str, action: str) -> dict[str, Any]:
    """The template with every statement of `handler`'s role that grants `action` removed."""
    changed = copy.deepcopy(template)
    resources = changed["Resources"]
    (role,) = [
        body["Properties"]["Role"]["Fn::GetAtt"][0]
        for body in resources.values()
        if body["Type"] == "AWS::Lambda::Function" and body["Properties"]["Handler"] == handler
    ]
    removed = 0
    for body in resources.values():
        if body["Type"] != "AWS::IAM::Policy" or {"Ref": role} not in body["Properties"]["Roles"]:
            continue
        document = body["Properties"]["PolicyDocument"]
        kept = [s for s in document["Statement"] if action not in _listed(s["Action"])]
        removed += len(document["Statement"]) - len(kept)
        document["Statement"] = kept
    assert removed, f"{role} has no statement granting {action}"
    return changed


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def session_without_run_instances(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalSession]:
    original = iam_local.load_template
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            iam_local,
            "load_template",
            lambda region: without_action(original(region), LAUNCH_HANDLER, "ec2:RunInstances"),
        )
        with LocalSession(tmp_path_factory.mktemp("runctl-iam"), E2E_SETTINGS) as session:
            yield session


def test_a_run_whose_launch_role_lacks_run_instances_fails_with_access_denied(
    session_without_run_instances: LocalSession, tmp_path: Path
):
    session = session_without_run_instances
    runner = ScriptRunner(session, tmp_path)

    outcome = runner.run("print('never runs')")

    assert outcome.execution_status == "FAILED"
    record = outcome.record.model_dump_json() if outcome.record else ""
    text = f"{outcome.error} {outcome.cause} {record}"
    assert "ec2:RunInstances" in text, text
    assert "not authorized" in text, text
    assert session.iam is not None
    assert any(action == "ec2:RunInstances" for _, action, _ in session.iam.denied)
    # Nothing was launched, so nothing is left running.
    assert session.run_instance_ids(outcome.run_id) == set()
