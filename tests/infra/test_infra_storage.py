"""The bucket, the runs table, the run log group and the stack outputs."""

from __future__ import annotations

import pytest

from runctl.client import stack as client_stack

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_bucket_blocks_public_access_keeps_versions_and_encrypts(synthesized):
    # Given the synthesized stack
    bucket = synthesized.resource(synthesized.stack.storage.bucket)

    # Then the runctl bucket is private, versioned, encrypted and kept on stack deletion
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    [encryption] = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert bucket["DeletionPolicy"] == "Retain"


def test_bucket_expires_old_versions_and_abandoned_uploads(synthesized):
    props = synthesized.resource(synthesized.stack.storage.bucket)["Properties"]

    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    rule = rules["ExpireOldVersionsAndAbandonedUploads"]
    assert rule["Status"] == "Enabled"
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 30}
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert "Prefix" not in rule  # the whole bucket


def test_bucket_expires_cached_environments_and_nothing_else_by_age(synthesized):
    props = synthesized.resource(synthesized.stack.storage.bucket)["Properties"]
    rules = props["LifecycleConfiguration"]["Rules"]

    [expiring] = [rule for rule in rules if "ExpirationInDays" in rule]
    assert (expiring["Id"], expiring["Prefix"]) == ("ExpireCachedEnvironments", "envs/")
    assert expiring["ExpirationInDays"] == 30


def test_bucket_access_is_logged_to_a_separate_bucket(synthesized):
    storage = synthesized.stack.storage
    props = synthesized.resource(storage.bucket)["Properties"]

    assert props["LoggingConfiguration"]["DestinationBucketName"] == {
        "Ref": synthesized.logical_id(storage.access_log_bucket)
    }


@pytest.mark.parametrize("which", ["bucket", "access_log_bucket"])
def test_bucket_policy_denies_requests_without_tls(synthesized, which):
    # Given the bucket's policy
    bucket_id = synthesized.logical_id(getattr(synthesized.stack.storage, which))
    [policy] = [
        body
        for body in synthesized.resources_of_type("AWS::S3::BucketPolicy").values()
        if body["Properties"]["Bucket"] == {"Ref": bucket_id}
    ]

    # Then a Deny applies to every request made without TLS
    denies = [
        statement
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement.get("Condition") == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert denies, "no Deny on aws:SecureTransport=false"
    assert denies[0]["Principal"] in ({"AWS": "*"}, "*")


def test_runs_table_is_keyed_by_run_id_with_pitr_and_on_demand(synthesized):
    table = synthesized.resource(synthesized.stack.storage.runs_table)

    props = table["Properties"]
    assert props["KeySchema"] == [{"AttributeName": "run_id", "KeyType": "HASH"}]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["DeletionPolicy"] == "Retain"


def test_runs_table_lists_runs_by_experiment(synthesized):
    props = synthesized.resource(synthesized.stack.storage.runs_table)["Properties"]

    [index] = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "experiment-index"
    assert index["KeySchema"] == [
        {"AttributeName": "experiment", "KeyType": "HASH"},
        {"AttributeName": "created_at", "KeyType": "RANGE"},
    ]


def test_run_log_group_is_named_after_the_stack_and_expires(synthesized):
    props = synthesized.resource(synthesized.stack.storage.run_log_group)["Properties"]

    assert props["LogGroupName"] == "/runctl/Runctl/runs"
    assert props["RetentionInDays"] == 90


def test_outputs_have_stable_ids(synthesized):
    outputs = synthesized.template_json["Outputs"]

    assert set(outputs) >= {
        "StateMachineArn",
        "BucketName",
        "RunsTableName",
        "LogGroupName",
        "InstanceRoleArn",
    }
    # Every output the client looks for (runctl/client/stack.py) is one the stack has.
    client_outputs = {
        value for name, value in vars(client_stack).items() if name.startswith("OUTPUT_")
    }
    assert len(client_outputs) >= 7
    assert client_outputs <= set(outputs)
    assert outputs["BucketName"]["Value"] == {
        "Ref": synthesized.logical_id(synthesized.stack.storage.bucket)
    }
