"""Switches IAM enforcement on in a running emulator, after the local deploy."""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

import boto3
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends

from lambdas.integrations.aws_clients import aws_client
from runctl.local.iam.enforcer import (
    UNRESTRICTED_KEY,
    Enforcer,
    LocalFunction,
    build_policy_set,
    local_names,
)
from runctl.local.iam.template import load_template


class MotoLookup:
    """Tags and launch templates, read from moto's EC2 backend."""

    def __init__(self, account: str, region: str) -> None:
        self._account, self._region = account, region

    def _backend(self) -> Any:
        return ec2_backends[self._account][self._region]

    def instance_tags(self, instance_id: str) -> dict[str, str]:
        return dict(self._backend().tags.get(instance_id, {}))

    def launch_template(self, id_or_name: str) -> tuple[str, dict[str, Any]]:
        backend = self._backend()
        template = (
            backend.get_launch_template(id_or_name)
            if id_or_name.startswith("lt-")
            else backend.get_launch_template_by_name(id_or_name)
        )
        return str(template.id), dict(template.default_version().data)


def local_functions(session: boto3.session.Session) -> list[LocalFunction]:
    functions = []
    for page in session.client("lambda").get_paginator("list_functions").paginate():
        for item in page["Functions"]:
            functions.append(
                LocalFunction(
                    name=item["FunctionName"],
                    arn=item["FunctionArn"],
                    handler=item.get("Handler", ""),
                    environment=item.get("Environment", {}).get("Variables", {}),
                    role_arn=item.get("Role", ""),
                )
            )
    return functions


def enforce_iam(stack: ExitStack, region: str, base_env: dict[str, str]) -> Enforcer:
    """Check every later request against the synthesized template's policies; `base_env` (the
    local instances' environment) gets the instance role's key. Undone when `stack` closes."""
    template = load_template(region)
    admin = boto3.session.Session(
        region_name=region,
        aws_access_key_id=UNRESTRICTED_KEY,
        aws_secret_access_key=UNRESTRICTED_KEY,
    )
    functions = local_functions(admin)
    state_machines = {
        item["name"]: item["stateMachineArn"]
        for item in admin.client("stepfunctions").list_state_machines()["stateMachines"]
    }
    names = local_names(
        template,
        account=DEFAULT_ACCOUNT_ID,
        region=region,
        functions=functions,
        state_machines=state_machines,
    )
    policies = build_policy_set(template, names, functions)
    enforcer = Enforcer(policies, MotoLookup(DEFAULT_ACCOUNT_ID, region))
    enforcer.install(stack)
    base_env["AWS_ACCESS_KEY_ID"] = policies.instance_key
    # Clients made before this point sign with the unrestricted key.
    aws_client.cache_clear()
    stack.callback(aws_client.cache_clear)
    return enforcer
