"""Interruption handling (issue #3): the EC2 event rules, the reaper's schedule, their delivery
(retries, dead-letter queues, alarms), and what the event handlers and new steps may do."""

from __future__ import annotations

import json

import pytest

from lambdas.functions import EVENT_HANDLERS, TRAIN_RUN_STEPS

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]

EVERY_FUNCTION = (*TRAIN_RUN_STEPS, *EVENT_HANDLERS)
MANAGED_TAG = {"StringEquals": {"aws:ResourceTag/runctl:managed": "true"}}
LOST_STATES = ["shutting-down", "terminated", "stopping", "stopped"]


def _events(synthesized):
    return synthesized.stack.instance_events


def _rules(synthesized):
    return synthesized.resources_of_type("AWS::Events::Rule")


def _rules_by_detail_type(synthesized):
    found = {}
    for body in _rules(synthesized).values():
        pattern = body["Properties"].get("EventPattern")
        if pattern:
            [detail_type] = pattern["detail-type"]
            found[detail_type] = body["Properties"]
    return found


def _statements(synthesized, name, action):
    function = _events(synthesized).functions.get(name)
    function = function or synthesized.stack.orchestration.functions[name]
    return [
        statement
        for statement in synthesized.role_statements(function.role)
        if action in synthesized.listed(statement["Action"])
    ]


# --- every registry function --------------------------------------------------------------------


@pytest.mark.parametrize("entry", EVERY_FUNCTION, ids=[entry.name for entry in EVERY_FUNCTION])
def test_every_registry_function_exists_with_its_handler(synthesized, entry):
    # Given the function built for the registry entry (a TrainRun step or an event handler)
    function = {
        **synthesized.stack.orchestration.functions,
        **_events(synthesized).functions,
    }[entry.name]
    props = synthesized.resource(function)["Properties"]
    reference = synthesized.resource(synthesized.stack.orchestration.functions["ValidateRun"])

    # Then it runs the registry's handler on the same runtime, layer, code and environment
    assert props["Handler"] == entry.handler
    for key in ("Runtime", "Architectures", "Layers", "Code", "Environment", "TracingConfig"):
        assert props[key] == reference["Properties"][key], key


def test_event_handlers_are_not_state_machine_steps(synthesized):
    assert set(_events(synthesized).functions) == {entry.name for entry in EVENT_HANDLERS}
    assert not set(_events(synthesized).functions) & set(synthesized.stack.orchestration.functions)


def test_a_sweep_ends_before_the_next_one_starts(synthesized):
    props = synthesized.resource(_events(synthesized).functions["ReapOrphans"])["Properties"]

    assert props["Timeout"] < 5 * 60


# --- the rules ----------------------------------------------------------------------------------


def test_ec2_rules_match_exactly_the_three_detail_types_from_ec2(synthesized):
    rules = _rules_by_detail_type(synthesized)

    assert set(rules) == {
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
        "EC2 Instance State-change Notification",
    }
    for props in rules.values():
        assert props["EventPattern"]["source"] == ["aws.ec2"]
        assert props["State"] == "ENABLED"


def test_state_changes_match_only_an_instance_going_away(synthesized):
    rules = _rules_by_detail_type(synthesized)

    state_change = rules["EC2 Instance State-change Notification"]["EventPattern"]
    assert state_change["detail"] == {"state": LOST_STATES}
    for detail_type in (
        "EC2 Spot Instance Interruption Warning",
        "EC2 Instance Rebalance Recommendation",
    ):
        assert "detail" not in rules[detail_type]["EventPattern"]


def test_ec2_rules_target_on_instance_event_only(synthesized):
    function_id = synthesized.logical_id(_events(synthesized).functions["OnInstanceEvent"])

    for props in _rules_by_detail_type(synthesized).values():
        [target] = props["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_reaper_runs_every_five_minutes(synthesized):
    function_id = synthesized.logical_id(_events(synthesized).functions["ReapOrphans"])
    scheduled = [
        body["Properties"]
        for body in _rules(synthesized).values()
        if "ScheduleExpression" in body["Properties"]
    ]

    [props] = scheduled
    assert props["ScheduleExpression"] == "rate(5 minutes)"
    [target] = props["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}


def test_every_rule_target_retries_for_a_bounded_time_and_has_a_dead_letter_queue(synthesized):
    # Given every rule in the stack and the queues the event handlers fail to
    queue_ids = {
        synthesized.logical_id(queue) for queue in _events(synthesized).dead_letter_queues.values()
    }
    rules = _rules(synthesized)
    assert len(rules) == 4

    # Then each target has a retry policy within EventBridge's limits, and one of those queues
    for body in rules.values():
        for target in body["Properties"]["Targets"]:
            policy = target["RetryPolicy"]
            assert 1 <= policy["MaximumRetryAttempts"] <= 185
            assert 60 <= policy["MaximumEventAgeInSeconds"] <= 86_400
            [queue_arn] = target["DeadLetterConfig"].values()
            assert queue_arn["Fn::GetAtt"][0] in queue_ids


def test_a_spot_warning_is_not_delivered_after_the_instance_is_gone(synthesized):
    rules = _rules_by_detail_type(synthesized)

    [target] = rules["EC2 Spot Instance Interruption Warning"]["Targets"]
    # The warning comes two minutes before the instance is reclaimed.
    assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] <= 120


def test_a_lost_instance_event_lives_as_long_as_the_heartbeat_backstop(synthesized, configured):
    # Given the default stack (heartbeat 300 s) and the configured one (120 s)
    for stack, heartbeat in ((synthesized, 300), (configured, 120)):
        rules = _rules_by_detail_type(stack)
        [target] = rules["EC2 Instance State-change Notification"]["Targets"]

        # Then the state-change event is retried until the heartbeat would have caught it
        assert target["RetryPolicy"]["MaximumEventAgeInSeconds"] == heartbeat + 60


def test_handler_failures_go_to_the_same_dead_letter_queue(synthesized):
    # Given each event handler's asynchronous invocation settings
    events = _events(synthesized)
    configs = synthesized.resources_of_type("AWS::Lambda::EventInvokeConfig").values()
    by_function = {
        body["Properties"]["FunctionName"]["Ref"]: body["Properties"] for body in configs
    }

    for name, function in events.functions.items():
        props = by_function[synthesized.logical_id(function)]
        # Then an event the handler failed on, after Lambda's retries, lands in its DLQ
        queue_id = synthesized.logical_id(events.dead_letter_queues[name])
        assert props["DestinationConfig"]["OnFailure"]["Destination"] == {
            "Fn::GetAtt": [queue_id, "Arn"]
        }
        assert props["MaximumEventAgeInSeconds"] <= 3600
    assert (
        by_function[synthesized.logical_id(events.functions["ReapOrphans"])]["MaximumRetryAttempts"]
        == 0
    )  # the next sweep is the retry


# --- the dead-letter queues ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [entry.name for entry in EVENT_HANDLERS])
def test_dead_letter_queue_is_encrypted_and_keeps_messages_14_days(synthesized, name):
    props = synthesized.resource(_events(synthesized).dead_letter_queues[name])["Properties"]

    assert props["SqsManagedSseEnabled"] is True
    assert props["MessageRetentionPeriod"] == 14 * 24 * 3600


@pytest.mark.parametrize("name", [entry.name for entry in EVENT_HANDLERS])
def test_dead_letter_queue_takes_only_tls_and_only_its_rules(synthesized, name):
    # Given the queue's policy and the rules delivering to it
    queue_id = synthesized.logical_id(_events(synthesized).dead_letter_queues[name])
    [policy] = [
        body["Properties"]["PolicyDocument"]["Statement"]
        for body in synthesized.resources_of_type("AWS::SQS::QueuePolicy").values()
        if body["Properties"]["Queues"] == [{"Ref": queue_id}]
    ]
    feeding = {
        rule_id
        for rule_id, body in _rules(synthesized).items()
        for target in body["Properties"]["Targets"]
        if target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    }

    # Then requests without TLS are denied
    [deny] = [statement for statement in policy if statement["Effect"] == "Deny"]
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert deny["Principal"] == {"AWS": "*"}
    # And EventBridge may send only on behalf of the rules that use this queue
    allows = [statement for statement in policy if statement["Effect"] == "Allow"]
    assert {
        statement["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"][0]
        for statement in allows
    } == feeding
    for statement in allows:
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"


@pytest.mark.parametrize("name", [entry.name for entry in EVENT_HANDLERS])
def test_an_alarm_goes_off_when_a_dead_letter_queue_holds_a_message(synthesized, name):
    events = _events(synthesized)
    props = synthesized.resource(events.alarms[name])["Properties"]

    assert props["Namespace"] == "AWS/SQS"
    assert props["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert props["Dimensions"] == [
        {
            "Name": "QueueName",
            "Value": {
                "Fn::GetAtt": [synthesized.logical_id(events.dead_letter_queues[name]), "QueueName"]
            },
        }
    ]
    assert props["ComparisonOperator"] == "GreaterThanThreshold"
    assert props["Threshold"] == 0
    assert props["TreatMissingData"] == "notBreaching"


# --- what the event handlers and the new steps may do -------------------------------------------


def test_on_instance_event_fails_task_tokens_and_nothing_else_in_step_functions(synthesized):
    states = [
        action
        for statement in synthesized.role_statements(
            _events(synthesized).functions["OnInstanceEvent"].role
        )
        for action in synthesized.listed(statement["Action"])
        if action.startswith("states:")
    ]
    [statement] = _statements(synthesized, "OnInstanceEvent", "states:SendTaskFailure")

    assert states == ["states:SendTaskFailure"]
    # No resource-level permissions exist for it (acknowledged like the instance role's)
    assert statement["Resource"] == "*"


def test_on_instance_event_sends_commands_only_to_runctl_instances(synthesized):
    found = _statements(synthesized, "OnInstanceEvent", "ssm:SendCommand")

    on_instances = [item for item in found if ":instance/*" in json.dumps(item["Resource"])]
    others = [item for item in found if item not in on_instances]
    assert [item["Condition"] for item in on_instances] == [
        {"StringEquals": {"ssm:resourceTag/runctl:managed": "true"}}
    ]
    [document] = others
    assert document["Resource"].endswith("::document/AWS-RunShellScript")
    assert "Condition" not in document


def test_on_instance_event_reads_and_updates_run_records_only(synthesized):
    table_id = synthesized.logical_id(synthesized.stack.storage.runs_table)
    dynamodb = {
        action: statement["Resource"]
        for statement in synthesized.role_statements(
            _events(synthesized).functions["OnInstanceEvent"].role
        )
        for action in synthesized.listed(statement["Action"])
        if action.startswith("dynamodb:")
    }

    assert dynamodb == {
        "dynamodb:GetItem": {"Fn::GetAtt": [table_id, "Arn"]},
        "dynamodb:UpdateItem": {"Fn::GetAtt": [table_id, "Arn"]},
    }


@pytest.mark.parametrize("action", ["states:StopExecution", "states:DescribeExecution"])
def test_reaper_may_touch_only_train_run_executions(synthesized, action):
    state_machine_id = synthesized.logical_id(synthesized.stack.orchestration.state_machine)

    [statement] = _statements(synthesized, "ReapOrphans", action)

    assert "Condition" not in statement
    assert statement["Resource"] == {
        "Fn::Join": [
            "",
            [
                "arn:aws:states:us-east-1:",
                {"Ref": "AWS::AccountId"},
                ":execution:",
                {"Fn::GetAtt": [state_machine_id, "Name"]},
                ":*",
            ],
        ]
    }


def test_reaper_terminates_only_managed_instances_and_scans_only_the_runs_table(synthesized):
    table_id = synthesized.logical_id(synthesized.stack.storage.runs_table)

    [terminate] = _statements(synthesized, "ReapOrphans", "ec2:TerminateInstances")
    [scan] = _statements(synthesized, "ReapOrphans", "dynamodb:Scan")

    assert terminate["Condition"] == MANAGED_TAG
    assert scan["Resource"] == {"Fn::GetAtt": [table_id, "Arn"]}  # not its indexes


def test_plan_next_attempt_updates_the_run_and_reads_attempt_results(synthesized):
    table_id = synthesized.logical_id(synthesized.stack.storage.runs_table)
    role = synthesized.stack.orchestration.functions["PlanNextAttempt"].role
    granted = {
        action: json.dumps(statement["Resource"])
        for statement in synthesized.role_statements(role)
        for action in synthesized.listed(statement["Action"])
        if not action.startswith(("logs:", "xray:"))
    }

    assert granted == {
        "dynamodb:GetItem": json.dumps({"Fn::GetAtt": [table_id, "Arn"]}),
        "dynamodb:UpdateItem": json.dumps({"Fn::GetAtt": [table_id, "Arn"]}),
        "s3:GetObject": granted["s3:GetObject"],
        "s3:ListBucket": granted["s3:ListBucket"],
    }
    assert granted["s3:GetObject"].endswith('/runs/*"]]}')


def test_release_previous_attempt_reads_run_files_and_ends_managed_instances(synthesized):
    role = synthesized.stack.orchestration.functions["ReleasePreviousAttempt"].role
    granted = sorted(
        action
        for statement in synthesized.role_statements(role)
        for action in synthesized.listed(statement["Action"])
        if not action.startswith(("logs:", "xray:"))
    )
    [read] = _statements(synthesized, "ReleasePreviousAttempt", "s3:GetObject")
    [listing] = _statements(synthesized, "ReleasePreviousAttempt", "s3:ListBucket")
    bucket_id = synthesized.logical_id(synthesized.stack.storage.bucket)

    assert granted == [
        "ec2:DescribeInstances",
        "ec2:TerminateInstances",
        "s3:GetObject",
        "s3:ListBucket",
    ]
    assert json.dumps(read["Resource"]).endswith('/runs/*"]]}')
    # ListBucket makes a not-yet-written handoff.json a 404 (not a 403) for HeadObject
    assert listing["Resource"] == {"Fn::GetAtt": [bucket_id, "Arn"]}
