"""IAM enforced by the emulator: each request is checked against its caller's role.

Who calls is told by the request's access key id: each Lambda function's role and the instance
role get their own key. The Lambdas run in this process, so their boto3 clients sign with
`PrincipalCredentials`, which picks the key of the function the calling thread is running
(lambda_bridge sets it around each invocation); the instance processes get the instance role's
key in their environment. Any other key (local mode's own calls, moto's Step Functions engine)
is not restricted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import threading
import uuid
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import boto3
from botocore.credentials import Credentials, ReadOnlyCredentials
from moto.core.authorization import ActionAuthenticatorMixin
from moto.s3.exceptions import S3ClientError
from werkzeug.exceptions import HTTPException

from runctl.local.iam.policy import Decision, PolicyError, Request, evaluate
from runctl.local.iam.requests import Call, authorizations
from runctl.local.iam.template import LocalNames, resolve

log = logging.getLogger(__name__)

# AWS-managed policies the stack attaches, as AWS publishes them (they are not in the template).
MANAGED_POLICIES: dict[str, list[dict[str, Any]]] = {
    "AmazonSSMManagedInstanceCore": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:DescribeAssociation",
                "ssm:GetDeployablePatchSnapshotForInstance",
                "ssm:GetDocument",
                "ssm:DescribeDocument",
                "ssm:GetManifest",
                "ssm:GetParameter",
                "ssm:GetParameters",
                "ssm:ListAssociations",
                "ssm:ListInstanceAssociations",
                "ssm:PutInventory",
                "ssm:PutComplianceItems",
                "ssm:PutConfigurePackageResult",
                "ssm:UpdateAssociationStatus",
                "ssm:UpdateInstanceAssociationStatus",
                "ssm:UpdateInstanceInformation",
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
                "ec2messages:AcknowledgeMessage",
                "ec2messages:DeleteMessage",
                "ec2messages:FailMessage",
                "ec2messages:GetEndpoint",
                "ec2messages:GetMessages",
                "ec2messages:SendReply",
            ],
            "Resource": "*",
        }
    ]
}
_SERVICE_PREFIX = {"stepfunctions": "states", "awslambda": "lambda", "lambda": "lambda"}
_JSON_SERVICES = {
    "dynamodb",
    "states",
    "ssm",
    "logs",
    "lambda",
    "events",
    "sqs",
    "ecr",
    "codebuild",
}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass(frozen=True)
class Principal:
    role: str  # the role's logical id in the template
    arn: str  # as AWS names the caller: arn:aws:sts::<account>:assumed-role/<role>/<session>
    access_key: str
    statements: tuple[Mapping[str, Any], ...]


@dataclass
class PolicySet:
    principals: dict[str, Principal]  # by access key id
    function_keys: dict[str, str]  # handler -> access key id
    instance_key: str
    unenforced_functions: list[str] = field(default_factory=list)
    unresolved: set[str] = field(default_factory=set)
    # The image-build project's role (its builds' calls: runctl/local/image_builds.py); empty
    # when the stack has no role CodeBuild may assume.
    codebuild_key: str = ""


def access_key_for(role: str) -> str:
    # 20 characters of [A-Z0-9], as AWS's (moto reads such keys from the Authorization header).
    return "ASIARUNCTL" + hashlib.sha256(role.encode()).hexdigest()[:10].upper()


def role_statements(template: Mapping[str, Any], names: LocalNames) -> dict[str, list[Any]]:
    """Each role's statements (inline policies, AWS::IAM::Policy resources attached to it,
    and the AWS-managed policies above), resolved to local names."""
    resources = template["Resources"]
    statements: dict[str, list[Any]] = {}
    for logical_id, body in resources.items():
        if body["Type"] != "AWS::IAM::Role":
            continue
        found = statements.setdefault(logical_id, [])
        properties = body["Properties"]
        for policy in properties.get("Policies", []):
            found.extend(policy["PolicyDocument"]["Statement"])
        for managed in properties.get("ManagedPolicyArns", []):
            name = str(resolve(managed, names)).rsplit("/", 1)[-1]
            if name not in MANAGED_POLICIES:
                log.warning("local IAM: managed policy %s of %s is not known", name, logical_id)
            found.extend(MANAGED_POLICIES.get(name, []))
    for body in resources.values():
        if body["Type"] != "AWS::IAM::Policy":
            continue
        properties = body["Properties"]
        for role in properties.get("Roles", []):
            role_id = role.get("Ref") if isinstance(role, dict) else None
            if role_id in statements:
                statements[role_id].extend(properties["PolicyDocument"]["Statement"])
    return {role: resolve(found, names) for role, found in statements.items()}


def _trusts(role: Mapping[str, Any], service: str) -> bool:
    document = role["Properties"].get("AssumeRolePolicyDocument", {})
    for statement in document.get("Statement", []):
        principals = statement.get("Principal", {}).get("Service", [])
        if service in (principals if isinstance(principals, list) else [principals]):
            return True
    return False


@dataclass(frozen=True)
class LocalFunction:
    name: str
    arn: str
    handler: str
    environment: Mapping[str, str]
    role_arn: str


def local_names(
    template: Mapping[str, Any],
    *,
    account: str,
    region: str,
    functions: list[LocalFunction],
    state_machines: Mapping[str, str],
) -> LocalNames:
    """The crux: which local resource each logical id is. Functions by handler; the resources
    their environment names (BUCKET_NAME, RUNS_TABLE_NAME, ...) by the variable's local value;
    state machines by construct id (local names end in -<id>); the instance role is local
    mode's one role."""
    names = LocalNames(account=account, region=region)
    resources = template["Resources"]
    by_handler = {function.handler: function for function in functions}
    for logical_id, body in resources.items():
        kind = body["Type"]
        if kind == "AWS::Lambda::Function":
            local = by_handler.get(body["Properties"].get("Handler", ""))
            if local is None:
                continue
            names.name(logical_id, kind, local.name, arn=local.arn)
            variables = body["Properties"].get("Environment", {}).get("Variables", {})
            for variable, value in variables.items():
                local_value = local.environment.get(variable)
                if not isinstance(value, dict) or not local_value:
                    continue
                if set(value) == {"Ref"} and value["Ref"] in resources:
                    target = value["Ref"]
                    names.name(target, resources[target]["Type"], local_value)
                elif set(value) == {"Fn::GetAtt"}:
                    # e.g. SECURITY_GROUP_ID = the group's GroupId
                    target, attribute = value["Fn::GetAtt"]
                    names.attributes[(target, attribute)] = local_value
        elif kind == "AWS::StepFunctions::StateMachine":
            construct_id = body.get("Path", "").rstrip("/").split("/")[-2:-1]
            for name, arn in state_machines.items():
                if construct_id and name.endswith(f"-{construct_id[0]}"):
                    names.name(logical_id, kind, arn)
        elif kind == "AWS::IAM::Role" and _trusts(body, "ec2.amazonaws.com") and functions:
            role_arn = functions[0].role_arn
            names.name(logical_id, kind, role_arn.rsplit("/", 1)[-1], arn=role_arn)
    return names


def build_policy_set(
    template: Mapping[str, Any], names: LocalNames, functions: list[LocalFunction]
) -> PolicySet:
    resources = template["Resources"]
    statements = role_statements(template, names)
    principals: dict[str, Principal] = {}

    def principal(role: str, session: str) -> str:
        key = access_key_for(role)
        principals[key] = Principal(
            role=role,
            arn=f"arn:aws:sts::{names.account}:assumed-role/{role}/{session}",
            access_key=key,
            statements=tuple(statements.get(role, [])),
        )
        return key

    template_handlers = {
        body["Properties"].get("Handler"): body["Properties"].get("Role")
        for body in resources.values()
        if body["Type"] == "AWS::Lambda::Function"
    }
    function_keys: dict[str, str] = {}
    unenforced = []
    for function in functions:
        role = template_handlers.get(function.handler)
        role_id = role.get("Fn::GetAtt", [""])[0] if isinstance(role, dict) else None
        if not role_id:
            unenforced.append(function.name)
            continue
        function_keys[function.handler] = principal(role_id, function.name)
    instance_roles = [
        logical_id
        for logical_id, body in resources.items()
        if body["Type"] == "AWS::IAM::Role" and _trusts(body, "ec2.amazonaws.com")
    ]
    if len(instance_roles) != 1:
        raise PolicyError(f"expected one role EC2 may assume, found {instance_roles}")
    instance_key = principal(instance_roles[0], "i-local")
    build_roles = [
        logical_id
        for logical_id, body in resources.items()
        if body["Type"] == "AWS::IAM::Role" and _trusts(body, "codebuild.amazonaws.com")
    ]
    if len(build_roles) > 1:
        raise PolicyError(f"expected at most one role CodeBuild may assume, found {build_roles}")
    codebuild_key = principal(build_roles[0], "local-build") if build_roles else ""
    return PolicySet(
        principals,
        function_keys,
        instance_key,
        unenforced,
        set(names.unresolved),
        codebuild_key=codebuild_key,
    )


# --- who is calling ------------------------------------------------------------------------------

_current = threading.local()
UNRESTRICTED_KEY = "testing"


@contextlib.contextmanager
def acting_as(handler: str) -> Iterator[None]:
    """Within this block, this thread's AWS calls are signed as the function with `handler`."""
    previous = getattr(_current, "handler", None)
    _current.handler = handler
    try:
        yield
    finally:
        _current.handler = previous


class PrincipalCredentials(Credentials):
    """Credentials whose access key is the calling thread's function's (botocore reads them
    at signing time, so one cached client serves every function)."""

    def __init__(self, function_keys: Mapping[str, str]) -> None:
        super().__init__(UNRESTRICTED_KEY, UNRESTRICTED_KEY, method="runctl-local")
        self._function_keys = dict(function_keys)

    def _key(self) -> str:
        handler = getattr(_current, "handler", None)
        return self._function_keys.get(handler or "", UNRESTRICTED_KEY)

    def get_frozen_credentials(self) -> ReadOnlyCredentials:
        return ReadOnlyCredentials(self._key(), UNRESTRICTED_KEY, None)


# --- the check in the emulator -----------------------------------------------------------------


class _Denied(HTTPException):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(description=body)
        self.code = status


class Enforcer:
    def __init__(self, policies: PolicySet, lookup: Any) -> None:
        self.policies = policies
        self.lookup = lookup
        # Every denial, for tests and for the run's report: (principal role, action, resource).
        self.denied: list[tuple[str, str, str]] = []

    def principal(self, headers: Mapping[str, str], query: Mapping[str, Any]) -> Principal | None:
        authorization = headers.get("Authorization") or headers.get("authorization") or ""
        match = _CREDENTIAL.search(authorization)
        key = match.group(1) if match else ""
        if not key:
            credential = query.get("X-Amz-Credential")
            credential = credential[0] if isinstance(credential, list) else credential
            key = str(credential or "").split("/", 1)[0]
        return self.policies.principals.get(key)

    def check(self, principal: Principal, call: Call) -> str | None:
        """None when allowed; else the AccessDenied message, as AWS words it."""
        needed = authorizations(call, self.lookup)
        if needed is None:
            self.denied.append((principal.role, f"{call.service}:{call.operation}", "?"))
            log.warning("local IAM: no mapping for %s:%s", call.service, call.operation)
            return (
                f"User: {principal.arn} is not authorized to perform: "
                f"{call.service}:{call.operation} (runctl local IAM: no request mapping for "
                f"this operation; add it to runctl/local/iam/requests.py)"
            )
        for request in needed:
            decision = self._decide(principal, request)
            if not decision.allowed:
                self.denied.append((principal.role, request.action, request.resource))
                why = (
                    f"with an explicit deny in an identity-based policy ({decision.statement})"
                    if decision.explicit_deny
                    else f"because no identity-based policy allows the {request.action} action"
                )
                message = (
                    f"User: {principal.arn} is not authorized to perform: {request.action} "
                    f"on resource: {request.resource} {why}"
                )
                log.warning("local IAM denied: %s", message)
                return message
        return None

    def _decide(self, principal: Principal, request: Request) -> Decision:
        try:
            return evaluate(principal.statements, request)
        except PolicyError as error:
            log.error("local IAM: %s's policy: %s", principal.role, error)
            return Decision(False)

    # moto hooks: `response` is moto's BaseResponse for the request.

    def normal_action(self, response: Any, resource: str = "*") -> None:
        principal = self.principal(response.headers, response.querystring)
        if principal is None:
            return
        service = _SERVICE_PREFIX.get(response.service_name, response.service_name)
        call = Call(
            service=service,
            operation=response._get_action(),
            params=_params(response),
            account=response.current_account,
            region=response.region,
        )
        message = self.check(principal, call)
        if message is not None:
            raise _denial(service, message)

    def s3_action(
        self, response: Any, bucket_name: str | None = None, key_name: str | None = None
    ) -> None:
        principal = self.principal(response.headers, response.querystring)
        if principal is None:
            return
        call = Call(
            service="s3",
            operation=str(response.data.get("Action", "")) if hasattr(response, "data") else "",
            params={},
            account=response.current_account,
            region=response.region,
            bucket=bucket_name or "",
            key=key_name or "",
            method=response.method,
            query=response.querystring,
            headers=response.headers,
            body=_raw_body(response),
        )
        message = self.check(principal, call)
        if message is not None:
            error = S3ClientError("AccessDenied", message)
            error.http_status_code = 403  # type: ignore[attr-defined]
            raise error

    def install(self, stack: ExitStack) -> None:
        enforcer = self

        def normal(response: Any, resource: str = "*") -> None:
            enforcer.normal_action(response, resource)

        def s3(response: Any, bucket_name: str | None = None, key_name: str | None = None) -> None:
            enforcer.s3_action(response, bucket_name, key_name)

        stack.enter_context(
            mock.patch.object(
                ActionAuthenticatorMixin, "_authenticate_and_authorize_normal_action", normal
            )
        )
        stack.enter_context(
            mock.patch.object(ActionAuthenticatorMixin, "_authenticate_and_authorize_s3_action", s3)
        )
        # The Lambdas' clients (boto3's default session) sign as the function running them.
        session = boto3.session.Session()
        session._session._credentials = PrincipalCredentials(self.policies.function_keys)
        stack.enter_context(mock.patch.object(boto3, "DEFAULT_SESSION", session))


def _raw_body(response: Any) -> bytes:
    body = getattr(response, "raw_body", None) or getattr(response, "body", b"")
    if isinstance(body, str):
        return body.encode()
    return body if isinstance(body, bytes) else b""


def _params(response: Any) -> dict[str, Any]:
    body = getattr(response, "body", None)
    if isinstance(body, dict):
        return body
    raw = _raw_body(response)
    content_type = str(response.headers.get("Content-Type", ""))
    if raw[:1] == b"{" or "json" in content_type:
        with contextlib.suppress(ValueError):
            parsed = json.loads(raw or b"{}")
            if isinstance(parsed, dict):
                return parsed
    return {
        key: value[0] if isinstance(value, list) and value else value
        for key, value in response.querystring.items()
    }


def _denial(service: str, message: str) -> _Denied:
    request_id = str(uuid.uuid4())
    if service in _JSON_SERVICES:
        return _Denied(400, json.dumps({"__type": "AccessDeniedException", "message": message}))
    if service == "ec2":
        # EC2 says UnauthorizedOperation (403), with an encoded message on AWS.
        return _Denied(
            403,
            "<Response><Errors><Error><Code>UnauthorizedOperation</Code>"
            f"<Message>You are not authorized to perform this operation. {_xml(message)}"
            f"</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
        )
    return _Denied(
        403,
        "<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>"
        f"<Message>{_xml(message)}</Message></Error><RequestId>{request_id}</RequestId>"
        "</ErrorResponse>",
    )


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
