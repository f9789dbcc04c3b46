"""Pipelines (issue #5) in the template: marker rules, schedules, StartPipelineRun's permissions
and environment, and a malformed `runctl:pipelines` failing synth with one clear message.

Uses the session's two synths: the default context (no pipelines) and CONFIGURED_CONTEXT (one
pipeline on the runctl bucket with a schedule, one on a data bucket without)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from app import build_app, cdk_json_context
from lambdas.models.pipeline import PipelineFunctionEnv, schedule_payload
from stacks.config import ConfigError, RunctlConfig
from tests.infra.conftest import CONFIGURED_CONTEXT, REPO_ROOT

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def _pipelines(configured):
    return configured.stack.pipelines


def _function_props(configured):
    return configured.resource(_pipelines(configured).functions["StartPipelineRun"])["Properties"]


def _marker_rules(configured):
    return {
        rule_id: configured.resource(rule)["Properties"]
        for rule_id, rule in _pipelines(configured).rules.items()
    }


def test_without_pipelines_the_stack_has_no_trigger_and_the_bucket_sends_no_events(synthesized):
    assert synthesized.stack.pipelines is None
    bucket = synthesized.resource(synthesized.stack.storage.bucket)["Properties"]
    assert "NotificationConfiguration" not in bucket
    assert not synthesized.resources_of_type("AWS::Scheduler::Schedule")
    assert not [
        body
        for body in synthesized.resources_of_type("AWS::Lambda::Function").values()
        if body["Properties"]["Handler"].endswith("start_pipeline_run.lambda_handler")
    ]


def test_a_watched_runctl_bucket_sends_its_events_to_eventbridge_without_a_custom_resource(
    configured,
):
    bucket = configured.resource(configured.stack.storage.bucket)["Properties"]

    assert bucket["NotificationConfiguration"] == {
        "EventBridgeConfiguration": {"EventBridgeEnabled": True}
    }
    assert not configured.resources_of_type("Custom::S3BucketNotifications")


def test_one_rule_per_watched_bucket_matches_only_its_pipelines_markers(configured):
    rules = _marker_rules(configured)
    bucket_ref = {"Ref": configured.logical_id(configured.stack.storage.bucket)}

    patterns = {rule_id: props["EventPattern"] for rule_id, props in rules.items()}

    assert patterns == {
        "MarkersInRunctlBucket": {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": [bucket_ref]},
                "object": {"key": [{"wildcard": "data/imagenet/*/_READY"}]},
            },
        },
        "MarkersIn-lab-datasets": {
            "source": ["aws.s3"],
            "detail-type": ["Object Created"],
            "detail": {
                "bucket": {"name": ["lab-datasets"]},
                "object": {"key": [{"wildcard": "corpora/*/MANIFEST.json"}]},
            },
        },
    }


def test_marker_rules_retry_for_a_day_into_the_dead_letter_queue(configured):
    pipelines = _pipelines(configured)
    function_id = configured.logical_id(pipelines.functions["StartPipelineRun"])
    queue_id = configured.logical_id(pipelines.dead_letter_queues["StartPipelineRun"])

    for props in _marker_rules(configured).values():
        [target] = props["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
        assert target["RetryPolicy"] == {
            "MaximumEventAgeInSeconds": 86400,
            "MaximumRetryAttempts": 8,
        }
    # And the function's own failures land in the same queue, which has an alarm
    [invoke_config] = [
        body
        for body in configured.resources_of_type("AWS::Lambda::EventInvokeConfig").values()
        if body["Properties"]["FunctionName"] == {"Ref": function_id}
    ]
    destination = invoke_config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"]
    assert destination == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert "StartPipelineRun" in pipelines.alarms


def test_a_scheduled_pipeline_has_a_schedule_that_starts_it_with_its_newest_version(configured):
    pipelines = _pipelines(configured)
    function_id = configured.logical_id(pipelines.functions["StartPipelineRun"])
    queue_id = configured.logical_id(pipelines.dead_letter_queues["StartPipelineRun"])
    [imagenet] = [item for item in configured.stack.config.pipelines if item.name == "imagenet"]

    assert set(pipelines.schedules) == {"imagenet"}  # the data-bucket pipeline has none
    props = configured.resource(pipelines.schedules["imagenet"])["Properties"]
    assert props["ScheduleExpression"] == "cron(0 3 * * ? *)"
    assert props["ScheduleExpressionTimezone"] == "Europe/Berlin"
    assert props["State"] == "ENABLED"
    target = props["Target"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert json.loads(target["Input"]) == schedule_payload(imagenet)
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 2}


def test_the_scheduler_role_may_only_invoke_start_pipeline_run_and_dead_letter(configured):
    pipelines = _pipelines(configured)
    function_id = configured.logical_id(pipelines.functions["StartPipelineRun"])
    role_arn = configured.resource(pipelines.schedules["imagenet"])["Properties"]["Target"][
        "RoleArn"
    ]
    [role_id, _] = role_arn["Fn::GetAtt"]

    statements = configured.policy_statements()[role_id]

    actions = sorted(
        action for statement in statements for action in configured.listed(statement["Action"])
    )
    assert actions == ["lambda:InvokeFunction", "sqs:SendMessage"]
    [invoke] = [item for item in statements if item["Action"] == "lambda:InvokeFunction"]
    assert invoke["Resource"][0] == {"Fn::GetAtt": [function_id, "Arn"]}
    trust = configured.template_json["Resources"][role_id]["Properties"]
    [assume] = trust["AssumeRolePolicyDocument"]["Statement"]
    assert assume["Principal"] == {"Service": "scheduler.amazonaws.com"}
    assert assume["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_start_pipeline_run_may_start_train_run_list_watched_prefixes_and_record_triggers(
    configured,
):
    pipelines = _pipelines(configured)
    role = pipelines.functions["StartPipelineRun"].role
    by_sid = {
        statement["Sid"]: statement
        for statement in configured.role_statements(role)
        if "Sid" in statement
    }
    bucket_id = configured.logical_id(configured.stack.storage.bucket)

    assert by_sid["StartTrainRun"]["Action"] == "states:StartExecution"
    assert by_sid["StartTrainRun"]["Resource"] == {
        "Ref": configured.logical_id(configured.stack.orchestration.state_machine)
    }
    assert by_sid["RecordTriggers"]["Resource"] == {
        "Fn::GetAtt": [configured.logical_id(pipelines.triggers_table), "Arn"]
    }
    listings = {
        json.dumps(statement["Resource"]): statement["Condition"]
        for sid, statement in by_sid.items()
        if sid.startswith("ListWatchedPrefixes")
    }
    assert listings == {
        json.dumps({"Fn::GetAtt": [bucket_id, "Arn"]}): {
            "StringLike": {"s3:prefix": ["data/imagenet/*"]}
        },
        json.dumps("arn:aws:s3:::lab-datasets"): {"StringLike": {"s3:prefix": ["corpora/*"]}},
    }
    # And it reads no object, and runs nothing but TrainRun
    actions = {
        action
        for statement in configured.role_statements(role)
        for action in configured.listed(statement["Action"])
    }
    assert not {action for action in actions if action.startswith("s3:Get")}
    assert {action for action in actions if action.startswith("states:")} == {
        "states:StartExecution"
    }


def test_the_function_environment_holds_the_pipelines_it_will_parse(configured):
    variables = _function_props(configured)["Environment"]["Variables"]
    pipelines = _pipelines(configured)

    # (the references resolve to names at deploy time)
    deployed = {
        **variables,
        "BUCKET_NAME": "runctl-bucket",
        "STATE_MACHINE_ARN": "arn:aws:states:eu-west-1:123456789012:stateMachine:TrainRun",
        "PIPELINE_TRIGGERS_TABLE_NAME": "triggers",
    }
    parsed = PipelineFunctionEnv.model_validate(deployed)

    restored = parsed.pipeline("imagenet"), parsed.pipeline("corpora")
    assert restored == tuple(
        item.model_copy(update={"schedule": None}) for item in configured.stack.config.pipelines
    )
    assert variables["PIPELINE_TRIGGERS_TABLE_NAME"] == {
        "Ref": configured.logical_id(pipelines.triggers_table)
    }
    assert variables["STATE_MACHINE_ARN"] == {
        "Ref": configured.logical_id(configured.stack.orchestration.state_machine)
    }


def test_the_triggers_table_expires_records_and_is_recoverable(configured):
    props = configured.resource(_pipelines(configured).triggers_table)["Properties"]

    assert props["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiration", "Enabled": True}
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_cfn_lint_reports_no_errors_on_the_configured_template(configured):
    assert configured.cfn_lint_problems("eu-west-1") == []


# --- malformed config --------------------------------------------------------------------------

BAD_PIPELINE = {
    "name": "imagenet",
    "watch": {"prefix": "data/imagenet/"},
    "run": {"code": {"s3_uri": "s3://lab-datasets/code/a.tgz"}, "entry_point": "t.py"},
    "schedule": {"expression": "every night"},
}


def test_a_malformed_pipeline_fails_before_any_construct_naming_pipeline_and_field():
    with pytest.raises(ConfigError) as raised:
        build_app({**CONFIGURED_CONTEXT, "runctl:pipelines": [BAD_PIPELINE]})

    message = str(raised.value)
    assert raised.value.key == "runctl:pipelines"
    assert "pipeline 'imagenet', schedule.expression" in message
    assert "'every night'" in message


def test_pipelines_on_the_command_line_are_parsed_as_json():
    context = {
        **cdk_json_context(),
        **CONFIGURED_CONTEXT,
        "runctl:pipelines": json.dumps([BAD_PIPELINE]),
    }

    with pytest.raises(ConfigError, match=r"schedule\.expression"):
        RunctlConfig.from_context(context)


def test_cdk_synth_with_a_malformed_pipeline_exits_with_one_clear_line():
    # Given `cdk synth -c runctl:pipelines=...` (the CDK CLI runs `python3 app.py` with it)
    bad = [{**BAD_PIPELINE, "schedule": None, "watch": {"prefix": "imagenet"}}]
    context = json.dumps({"runctl:pipelines": bad})
    script = (
        "import json, os, sys; sys.argv = ['app.py']; "
        f"os.environ['CDK_CONTEXT_JSON'] = {context!r}; "
        "import runpy; runpy.run_path('app.py', run_name='__main__')"
    )

    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 1
    [line] = [text for text in finished.stderr.splitlines() if text.startswith("runctl:")]
    assert "cdk context 'runctl:pipelines': pipeline 'imagenet', watch.prefix" in line
    assert "Traceback" not in finished.stderr
