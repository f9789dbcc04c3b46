"""What `make deploy` / `make destroy` (stacks/deploy.py) read from the real cloud assembly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from stacks.deploy import retained_resources, stack_targets

pytestmark = [pytest.mark.infra, pytest.mark.xdist_group("infra")]


def test_deploy_finds_the_stack_region_and_bootstrap_needs_in_the_assembly(synthesized):
    [target] = stack_targets(synthesized.outdir)

    assert target.stack_name == "Runctl"
    assert target.region == "us-east-1"
    assert target.account is None  # left to the credentials (no CDK_DEFAULT_ACCOUNT here)
    assert target.bootstrap_version == 6
    assert target.version_parameter == "/cdk-bootstrap/hnb659fds/version"


def test_the_region_and_name_follow_the_context(configured):
    [target] = stack_targets(configured.outdir)

    assert (target.stack_name, target.region) == ("RunctlLab", "eu-west-1")


def test_destroy_names_the_buckets_table_and_image_repository_it_keeps(synthesized):
    [target] = stack_targets(synthesized.outdir)
    storage = synthesized.stack.storage
    images = synthesized.stack.images

    assert sorted(retained_resources(target)) == sorted(
        [
            (synthesized.logical_id(storage.bucket), "AWS::S3::Bucket"),
            (synthesized.logical_id(storage.access_log_bucket), "AWS::S3::Bucket"),
            (synthesized.logical_id(storage.runs_table), "AWS::DynamoDB::Table"),
            (synthesized.logical_id(images.repository), "AWS::ECR::Repository"),
        ]
    )


README = Path(__file__).resolve().parents[2] / "README.md"


@pytest.mark.parametrize(
    ("phrase", "cfn_type"),
    [
        ("Step Functions state machines", "AWS::StepFunctions::StateMachine"),
        ("Lambda functions", "AWS::Lambda::Function"),
        ("S3 buckets", "AWS::S3::Bucket"),
        ("DynamoDB table", "AWS::DynamoDB::Table"),
        ("EventBridge rules", "AWS::Events::Rule"),
        ("SQS dead-letter queues", "AWS::SQS::Queue"),
        ("CloudWatch alarms", "AWS::CloudWatch::Alarm"),
    ],
)
def test_the_readme_counts_what_the_stack_creates(synthesized, phrase, cfn_type):
    # Given the README's "Deploying" section, which counts resources (and prices the alarms)
    text = README.read_text()
    section = text[text.index("## Deploying\n") : text.index("\n## ", text.index("## Deploying"))]

    # Then each count is the default stack's
    words = r"\s+".join(map(re.escape, phrase.split()))
    counts = {int(n) for n in re.findall(rf"(\d+)\s+{words}", section)}
    assert counts == {len(synthesized.resources_of_type(cfn_type))}, phrase
