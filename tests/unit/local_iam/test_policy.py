"""The local IAM evaluator: actions, resources, conditions, explicit deny."""

from __future__ import annotations

import pytest

from runctl.local.iam.policy import PolicyError, Request, evaluate, wildcard_match

BUCKET = "arn:aws:s3:::runctl-local-bucket"


def allow(action, resource, condition=None, sid="S"):
    statement = {"Sid": sid, "Effect": "Allow", "Action": action, "Resource": resource}
    if condition:
        statement["Condition"] = condition
    return statement


@pytest.mark.parametrize(
    ("pattern", "value", "matched"),
    [
        ("s3:Get*", "s3:GetObject", True),
        ("s3:Get*", "s3:PutObject", False),
        ("ec2:Describe*", "ec2:DescribeInstances", True),
        ("ssm:Get?arameter", "ssm:GetParameter", True),
        ("*", "anything", True),
    ],
)
def test_action_wildcards(pattern, value, matched):
    assert wildcard_match(pattern, value, ignore_case=True) is matched


def test_actions_match_case_insensitively_and_resources_case_sensitively():
    statements = [allow("S3:getobject", f"{BUCKET}/runs/*")]
    assert evaluate(statements, Request("s3:GetObject", f"{BUCKET}/runs/a/b.json")).allowed
    assert not evaluate(statements, Request("s3:GetObject", f"{BUCKET}/RUNS/a")).allowed


def test_resource_wildcard_spans_slashes_and_colons_but_not_other_prefixes():
    statements = [allow(["s3:PutObject"], [f"{BUCKET}/runs/*", f"{BUCKET}/envs/*"])]
    assert evaluate(statements, Request("s3:PutObject", f"{BUCKET}/envs/k.tar.gz")).allowed
    assert not evaluate(statements, Request("s3:PutObject", f"{BUCKET}/code/x.tgz")).allowed
    assert not evaluate(statements, Request("s3:PutObject", f"{BUCKET}-other/runs/x")).allowed


def test_a_resource_star_request_needs_a_star_statement():
    scoped = [allow("ec2:DescribeInstances", "arn:aws:ec2:us-east-1:1:instance/*")]
    assert not evaluate(scoped, Request("ec2:DescribeInstances", "*")).allowed
    assert evaluate([allow("ec2:DescribeInstances", "*")], Request("ec2:DescribeInstances", "*"))


def test_nothing_allowed_is_an_implicit_deny():
    decision = evaluate([], Request("s3:GetObject", f"{BUCKET}/k"))
    assert not decision.allowed and not decision.explicit_deny


def test_explicit_deny_wins_over_any_allow():
    statements = [
        allow("s3:*", f"{BUCKET}/*"),
        {
            "Sid": "NoCode",
            "Effect": "Deny",
            "Action": "s3:PutObject",
            "Resource": f"{BUCKET}/code/*",
        },
    ]
    decision = evaluate(statements, Request("s3:PutObject", f"{BUCKET}/code/a"))
    assert not decision.allowed and decision.explicit_deny and decision.statement == "NoCode"
    assert evaluate(statements, Request("s3:PutObject", f"{BUCKET}/runs/a")).allowed


def test_not_action_and_not_resource():
    statements = [{"Effect": "Allow", "NotAction": "s3:Delete*", "NotResource": f"{BUCKET}/x"}]
    assert evaluate(statements, Request("s3:GetObject", f"{BUCKET}/y")).allowed
    assert not evaluate(statements, Request("s3:DeleteObject", f"{BUCKET}/y")).allowed
    assert not evaluate(statements, Request("s3:GetObject", f"{BUCKET}/x")).allowed


TAGGED = {"StringEquals": {"ssm:resourceTag/runctl:managed": "true"}}
INSTANCE = "arn:aws:ec2:us-east-1:123456789012:instance/i-1"


def test_string_equals_on_a_resource_tag():
    statements = [allow("ssm:SendCommand", "arn:aws:ec2:us-east-1:123456789012:instance/*", TAGGED)]
    tagged = {"ssm:resourcetag/runctl:managed": ["true"]}
    assert evaluate(statements, Request("ssm:SendCommand", INSTANCE, tagged)).allowed
    other = {"ssm:resourcetag/runctl:managed": ["false"]}
    assert not evaluate(statements, Request("ssm:SendCommand", INSTANCE, other)).allowed
    # An untagged instance has no such key: the condition does not hold.
    assert not evaluate(statements, Request("ssm:SendCommand", INSTANCE, {})).allowed


def test_condition_keys_are_case_insensitive_and_values_case_sensitive():
    statements = [
        allow("ec2:CreateTags", "*", {"StringEquals": {"EC2:CreateAction": "RunInstances"}})
    ]
    assert evaluate(
        statements, Request("ec2:CreateTags", "*", {"ec2:createaction": ["RunInstances"]})
    )
    denied = Request("ec2:CreateTags", "*", {"ec2:createaction": ["runinstances"]})
    assert not evaluate(statements, denied).allowed


ATTRIBUTES = {
    "ForAllValues:StringEquals": {"dynamodb:Attributes": ["run_id", "status", "updated_at"]},
    "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE", "UPDATED_NEW"]},
}
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/runs"


@pytest.mark.parametrize(
    ("context", "allowed"),
    [
        ({"dynamodb:attributes": ["run_id", "status"]}, True),
        ({"dynamodb:attributes": ["run_id", "status", "end_reason"]}, False),
        ({}, True),  # ForAllValues over no values holds
        ({"dynamodb:attributes": ["status"], "dynamodb:returnvalues": ["UPDATED_NEW"]}, True),
        ({"dynamodb:attributes": ["status"], "dynamodb:returnvalues": ["ALL_NEW"]}, False),
    ],
)
def test_for_all_values_and_if_exists(context, allowed):
    statements = [allow("dynamodb:UpdateItem", TABLE, ATTRIBUTES)]
    assert evaluate(statements, Request("dynamodb:UpdateItem", TABLE, context)).allowed is allowed


def test_for_any_value_needs_one_match():
    condition = {"ForAnyValue:StringLike": {"aws:TagKeys": ["runctl:*"]}}
    statements = [allow("ec2:CreateTags", "*", condition)]
    assert evaluate(statements, Request("ec2:CreateTags", "*", {"aws:tagkeys": ["a", "runctl:x"]}))
    assert not evaluate(statements, Request("ec2:CreateTags", "*", {"aws:tagkeys": ["a"]})).allowed
    assert not evaluate(statements, Request("ec2:CreateTags", "*", {})).allowed


def test_negated_operator_holds_when_the_key_is_absent():
    statements = [allow("s3:ListBucket", BUCKET, {"StringNotLike": {"s3:prefix": "secret/*"}})]
    assert evaluate(statements, Request("s3:ListBucket", BUCKET, {})).allowed
    assert evaluate(statements, Request("s3:ListBucket", BUCKET, {"s3:prefix": ["runs/"]})).allowed
    listing_secret = Request("s3:ListBucket", BUCKET, {"s3:prefix": ["secret/a"]})
    assert not evaluate(statements, listing_secret).allowed


def test_string_like_bool_numeric_and_null():
    like = [allow("s3:ListBucket", BUCKET, {"StringLike": {"s3:prefix": ["runs/*", "code/"]}})]
    assert evaluate(like, Request("s3:ListBucket", BUCKET, {"s3:prefix": ["runs/r1/"]})).allowed
    assert not evaluate(like, Request("s3:ListBucket", BUCKET, {"s3:prefix": ["data/"]})).allowed
    secure = [allow("s3:GetObject", "*", {"Bool": {"aws:SecureTransport": True}})]
    assert evaluate(secure, Request("s3:GetObject", "x", {"aws:securetransport": ["true"]})).allowed
    small = [allow("s3:ListBucket", "*", {"NumericLessThanEquals": {"s3:max-keys": "10"}})]
    assert evaluate(small, Request("s3:ListBucket", "x", {"s3:max-keys": ["10"]})).allowed
    assert not evaluate(small, Request("s3:ListBucket", "x", {"s3:max-keys": ["11"]})).allowed
    untagged = [allow("ec2:RunInstances", "*", {"Null": {"aws:RequestTag/owner": "true"}})]
    assert evaluate(untagged, Request("ec2:RunInstances", "x", {})).allowed
    tagged = Request("ec2:RunInstances", "x", {"aws:requesttag/owner": ["me"]})
    assert not evaluate(untagged, tagged).allowed


def test_every_condition_key_must_hold_and_values_of_one_key_are_ored():
    condition = {
        "StringEquals": {
            "ec2:CreateAction": ["RunInstances", "CreateVolume"],
            "aws:RequestTag/a": "1",
        }
    }
    statements = [allow("ec2:CreateTags", "*", condition)]
    both = {"ec2:createaction": ["CreateVolume"], "aws:requesttag/a": ["1"]}
    assert evaluate(statements, Request("ec2:CreateTags", "*", both)).allowed
    one = {"ec2:createaction": ["CreateVolume"]}
    assert not evaluate(statements, Request("ec2:CreateTags", "*", one)).allowed


def test_an_unknown_operator_is_an_error_not_an_allow():
    statements = [allow("s3:GetObject", "*", {"DateLessThan": {"aws:CurrentTime": "2030-01-01"}})]
    with pytest.raises(PolicyError, match="DateLessThan"):
        evaluate(statements, Request("s3:GetObject", "x", {}))
