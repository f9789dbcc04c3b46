"""The Lambdas the client invokes (CLIENT_FUNCTIONS): today StopRun, for `runctl stop`.

A function rather than client-side calls: users need one `lambda:InvokeFunction` permission,
and the stop protocol (mark, then tell the agent) runs with the stack's own least privilege."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from lambdas.functions import CLIENT_FUNCTIONS
from stacks.orchestration import Orchestration
from stacks.step_permissions import ClientFunctionPermissions


class ClientFunctions(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        orchestration: Orchestration,
        permissions: ClientFunctionPermissions,
    ) -> None:
        super().__init__(scope, construct_id)
        self.functions: dict[str, lambda_.Function] = {}
        for entry in CLIENT_FUNCTIONS:
            function = orchestration.build_function(
                self,
                entry,
                description=f"runctl client function {entry.name}",
                timeout=Duration.seconds(30),
            )
            permissions.grant(entry.name, function)
            self.functions[entry.name] = function
