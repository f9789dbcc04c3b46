"""cdk-nag acknowledgements: named per finding, each with its reason, next to what they cover.

cdk-nag 3 matches an acknowledgement by exact id, and IAM4/IAM5 report one finding per managed
policy or wildcard (`AwsSolutions-IAM5[Resource::<Bucket.Arn>/code/*]`), so a bare
`AwsSolutions-IAM5` acknowledges nothing. The helpers here render ARNs the way cdk-nag prints
them, so each acknowledgement names exactly the wildcard it accepts.
"""

from __future__ import annotations

from typing import Any, Final

from aws_cdk import Acknowledgment, Stack, Validations
from constructs import IConstruct

# Where aws-cdk-lib records acknowledgements (construct metadata); tests read them from here.
ACKNOWLEDGED_RULES_METADATA: Final = "aws:cdk:acknowledged-rules"
MIN_REASON_LENGTH: Final = 20

NO_RESOURCE_SCOPE: Final = (
    "support no resource-level permissions (Service Authorization Reference), so the only "
    "valid Resource is '*'"
)


def acknowledge(scope: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge AwsSolutions `rule` ("S1", "IAM5[Resource::*]") on `scope` and its children."""
    if len(reason.strip()) < MIN_REASON_LENGTH:
        raise ValueError(f"acknowledging AwsSolutions-{rule} needs a real reason, got {reason!r}")
    Validations.of(scope).acknowledge(
        Acknowledgment(id=f"AwsSolutions::AwsSolutions-{rule}", reason=reason)
    )


def acknowledge_resource_wildcard(scope: IConstruct, resource: str, reason: str) -> None:
    """Accept one wildcard Resource (an ARN, tokens allowed) in the policies under `scope`."""
    acknowledge(scope, f"IAM5[Resource::{nag_form(scope, resource)}]", reason)


def acknowledge_managed_policy(scope: IConstruct, policy_arn: str, reason: str) -> None:
    acknowledge(scope, f"IAM4[Policy::{nag_form(scope, policy_arn)}]", reason)


def nag_form(scope: IConstruct, value: str) -> str:
    """`value` as cdk-nag prints it: Ref X -> <X>, GetAtt X.Arn -> <X.Arn>, joins flattened."""
    return _render(Stack.of(scope).resolve(value))


def _render(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        [(function, argument)] = value.items()
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
        if function == "Fn::Join":
            separator, parts = argument
            return str(separator).join(_render(part) for part in parts)
    raise ValueError(f"cannot render {value!r} the way cdk-nag does")
