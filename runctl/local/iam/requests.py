"""What a request to the emulator must be authorized for: IAM actions, resource ARNs and the
condition keys the stack's policies use, per service and operation.

`authorizations()` returns None for an operation not in these tables; the enforcer denies it for
a restricted principal, naming the operation, so a gap shows up instead of passing silently.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runctl.local.iam.policy import Request


class Lookup(Protocol):
    """What the mapping reads from the emulator's state (tags of existing resources)."""

    def instance_tags(self, instance_id: str) -> dict[str, str]: ...

    def launch_template(self, id_or_name: str) -> tuple[str, dict[str, Any]]:
        """(launch template id, its default version's data as EC2's API names it)."""
        ...


@dataclass(frozen=True)
class Call:
    service: str  # the IAM prefix: ec2, dynamodb, states, ssm, logs, s3, sts, ...
    operation: str  # the API operation, e.g. RunInstances
    params: Mapping[str, Any]  # JSON body, or the query string's first values (flat names)
    account: str
    region: str
    # S3 only: bucket, key, HTTP method, query and headers.
    bucket: str = ""
    key: str = ""
    method: str = ""
    query: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


Mapper = Callable[[Call, Lookup], list[Request]]


def _tags_context(tags: Mapping[str, str], *prefixes: str) -> dict[str, list[str]]:
    return {
        f"{prefix}/{key}".lower(): [value] for key, value in tags.items() for prefix in prefixes
    }


def _request_tags_context(tags: Mapping[str, str]) -> dict[str, list[str]]:
    context = _tags_context(tags, "aws:RequestTag")
    if tags:
        context["aws:tagkeys"] = list(tags)
    return context


def _indexed(params: Mapping[str, Any], prefix: str) -> list[Any]:
    """Query-protocol lists: Prefix.1, Prefix.2, ... (values in index order)."""
    found: dict[int, Any] = {}
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)$")
    for name, value in params.items():
        if match := pattern.match(name):
            found[int(match.group(1))] = value
    return [found[index] for index in sorted(found)]


def _query_tags(params: Mapping[str, Any], prefix: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    index = 1
    while f"{prefix}.{index}.Key" in params:
        tags[str(params[f"{prefix}.{index}.Key"])] = str(params.get(f"{prefix}.{index}.Value", ""))
        index += 1
    return tags


# --- EC2 -------------------------------------------------------------------------------------

_EC2_ID_TYPES = {
    "i": "instance",
    "vol": "volume",
    "eni": "network-interface",
    "sir": "spot-instances-request",
    "sg": "security-group",
    "subnet": "subnet",
    "lt": "launch-template",
    "vpc": "vpc",
    "snap": "snapshot",
}


def ec2_arn(call: Call, resource_type: str, resource_id: str) -> str:
    # Images and snapshots owned by AWS carry no account in their ARN.
    account = "" if resource_type in {"image", "snapshot"} else call.account
    return f"arn:aws:ec2:{call.region}:{account}:{resource_type}/{resource_id}"


def _ec2_id_arn(call: Call, resource_id: str) -> str:
    kind = (
        "image"
        if resource_id.startswith("ami-")
        else _EC2_ID_TYPES.get(resource_id.split("-", 1)[0], "unknown")
    )
    return ec2_arn(call, kind, resource_id)


def _instance_context(lookup: Lookup, instance_id: str) -> dict[str, list[str]]:
    return _tags_context(lookup.instance_tags(instance_id), "aws:ResourceTag", "ec2:ResourceTag")


def _ec2_on_instances(call: Call, lookup: Lookup) -> list[Request]:
    action = f"ec2:{call.operation}"
    return [
        Request(
            action, ec2_arn(call, "instance", instance_id), _instance_context(lookup, instance_id)
        )
        for instance_id in _indexed(call.params, "InstanceId")
    ]


def _ec2_create_tags(call: Call, lookup: Lookup) -> list[Request]:
    action = f"ec2:{call.operation}"
    tags = _query_tags(call.params, "Tag")
    requests = []
    for resource_id in _indexed(call.params, "ResourceId"):
        context = _request_tags_context(tags)
        if resource_id.startswith("i-"):
            context.update(_instance_context(lookup, resource_id))
        requests.append(Request(action, _ec2_id_arn(call, resource_id), context))
    return requests


def _ec2_run_instances(call: Call, lookup: Lookup) -> list[Request]:
    params = call.params
    template_id, template = "", dict[str, Any]()
    template_ref = params.get("LaunchTemplate.LaunchTemplateId") or params.get(
        "LaunchTemplate.LaunchTemplateName"
    )
    if template_ref:
        template_id, template = lookup.launch_template(str(template_ref))
    image_id = params.get("ImageId") or template.get("ImageId")
    tokens = params.get("MetadataOptions.HttpTokens") or (
        template.get("MetadataOptions") or {}
    ).get("HttpTokens")
    market = params.get("InstanceMarketOptions.MarketType") or (
        template.get("InstanceMarketOptions") or {}
    ).get("MarketType")
    instance_type = params.get("InstanceType") or template.get("InstanceType")
    tag_specs: dict[str, dict[str, str]] = {}
    index = 1
    while f"TagSpecification.{index}.ResourceType" in params:
        resource_type = str(params[f"TagSpecification.{index}.ResourceType"])
        tag_specs.setdefault(resource_type, {}).update(
            _query_tags(params, f"TagSpecification.{index}.Tag")
        )
        index += 1

    def created(resource_type: str, **extra: list[str]) -> Request:
        context = _request_tags_context(tag_specs.get(resource_type, {}))
        context.update({key: value for key, value in extra.items()})
        return Request("ec2:RunInstances", ec2_arn(call, resource_type, "*"), context)

    instance_context: dict[str, list[str]] = {}
    if tokens:
        instance_context["ec2:metadatahttptokens"] = [str(tokens)]
    if instance_type:
        instance_context["ec2:instancetype"] = [str(instance_type)]
    instance_context["ec2:instancemarkettype"] = ["spot" if market == "spot" else "on-demand"]
    requests = [
        Request(
            "ec2:RunInstances",
            ec2_arn(call, "instance", "*"),
            {
                **_request_tags_context(tag_specs.get("instance", {})),
                **instance_context,
            },
        ),
        created("volume"),
        created("network-interface"),
    ]
    if market == "spot":
        requests.append(created("spot-instances-request"))
    if image_id:
        requests.append(Request("ec2:RunInstances", ec2_arn(call, "image", str(image_id))))
    if template_id:
        requests.append(Request("ec2:RunInstances", ec2_arn(call, "launch-template", template_id)))
    subnets = [params.get("SubnetId"), *_indexed(params, "NetworkInterface.1.SubnetId")]
    subnets.append(params.get("NetworkInterface.1.SubnetId"))
    for subnet in {str(item) for item in subnets if item}:
        requests.append(Request("ec2:RunInstances", ec2_arn(call, "subnet", subnet)))
    groups = [
        *_indexed(params, "SecurityGroupId"),
        *_indexed(params, "NetworkInterface.1.SecurityGroupId"),
        *(template.get("SecurityGroupIds") or []),
    ]
    for group in dict.fromkeys(str(item) for item in groups):
        requests.append(Request("ec2:RunInstances", ec2_arn(call, "security-group", group)))
    # Tagging on create is authorized as CreateTags with ec2:CreateAction = RunInstances.
    for resource_type, tags in tag_specs.items():
        context = _request_tags_context(tags)
        context["ec2:createaction"] = ["RunInstances"]
        requests.append(Request("ec2:CreateTags", ec2_arn(call, resource_type, "*"), context))
    return requests


def _ec2(call: Call, lookup: Lookup) -> list[Request] | None:
    operation = call.operation
    if operation.startswith("Describe"):
        return [Request(f"ec2:{operation}", "*")]
    mapper = {
        "RunInstances": _ec2_run_instances,
        "TerminateInstances": _ec2_on_instances,
        "StopInstances": _ec2_on_instances,
        "StartInstances": _ec2_on_instances,
        "RebootInstances": _ec2_on_instances,
        "CreateTags": _ec2_create_tags,
        "DeleteTags": _ec2_create_tags,
    }.get(operation)
    return mapper(call, lookup) if mapper else None


# --- DynamoDB --------------------------------------------------------------------------------

_EXPRESSION_WORDS = {"set", "remove", "add", "delete", "and", "or", "not", "between", "in"}
_TOKEN = re.compile(r"(?<![.:\w#])(#?[A-Za-z_][\w-]*)(\s*\()?")


def expression_attributes(expression: str, names: Mapping[str, str] | None) -> set[str]:
    """Top-level attribute names an update/condition/projection expression reads or writes."""
    found = set()
    # Drop :values, nested .parts and [n] indexes; functions are names followed by "(".
    for token, call_paren in _TOKEN.findall(expression or ""):
        if call_paren or token.lower() in _EXPRESSION_WORDS:
            continue
        found.add((names or {}).get(token, token) if token.startswith("#") else token)
    return found


def _item_attributes(body: Mapping[str, Any]) -> set[str]:
    attributes = set((body.get("Key") or {}).keys()) | set((body.get("Item") or {}).keys())
    names = body.get("ExpressionAttributeNames")
    for name in ("UpdateExpression", "ConditionExpression", "ProjectionExpression"):
        attributes |= expression_attributes(str(body.get(name) or ""), names)
    attributes |= set((body.get("AttributeUpdates") or {}).keys())
    attributes |= set(body.get("AttributesToGet") or [])
    return attributes


def _dynamodb_context(body: Mapping[str, Any]) -> dict[str, list[str]]:
    context: dict[str, list[str]] = {}
    attributes = _item_attributes(body)
    if attributes and (
        "UpdateExpression" in body
        or "Item" in body
        or "ProjectionExpression" in body
        or "AttributeUpdates" in body
        or "AttributesToGet" in body
    ):
        context["dynamodb:attributes"] = sorted(attributes)
    key = body.get("Key") or body.get("Item") or {}
    if key:
        # The partition key's value (the first key attribute: runs are keyed on run_id alone).
        first = next(iter(key.values()))
        if isinstance(first, dict) and first:
            context["dynamodb:leadingkeys"] = [str(next(iter(first.values())))]
    for name in ("ReturnValues", "Select", "ReturnConsumedCapacity"):
        if body.get(name):
            context[f"dynamodb:{name.lower()}"] = [str(body[name])]
    return context


def _table_arn(call: Call, table: str, index: str = "") -> str:
    if table.startswith("arn:"):
        base = table
    else:
        base = f"arn:aws:dynamodb:{call.region}:{call.account}:table/{table}"
    return f"{base}/index/{index}" if index else base


def _dynamodb(call: Call, lookup: Lookup) -> list[Request] | None:
    body, operation = call.params, call.operation
    action = f"dynamodb:{operation}"
    if operation in {"ListTables", "DescribeLimits", "DescribeEndpoints"}:
        return [Request(action, "*")]
    if operation in {"BatchGetItem", "BatchWriteItem"}:
        return [
            Request(action, _table_arn(call, table)) for table in (body.get("RequestItems") or {})
        ]
    if operation in {"TransactWriteItems", "TransactGetItems"}:
        requests = []
        for item in body.get("TransactItems") or []:
            for kind, inner in item.items():
                inner_action = {
                    "Put": "PutItem",
                    "Update": "UpdateItem",
                    "Delete": "DeleteItem",
                    "ConditionCheck": "ConditionCheckItem",
                    "Get": "GetItem",
                }[kind]
                requests.append(
                    Request(
                        f"dynamodb:{inner_action}",
                        _table_arn(call, str(inner.get("TableName", ""))),
                        _dynamodb_context(inner),
                    )
                )
        return requests
    if "TableName" not in body:
        return None
    resource = _table_arn(call, str(body["TableName"]), str(body.get("IndexName") or ""))
    return [Request(action, resource, _dynamodb_context(body))]


# --- Step Functions, SSM, CloudWatch Logs, STS --------------------------------------------------

_STATES_BY_PARAMETER = {
    "stateMachineArn": {
        "StartExecution",
        "StartSyncExecution",
        "DescribeStateMachine",
        "ListExecutions",
        "UpdateStateMachine",
        "DeleteStateMachine",
    },
    "executionArn": {
        "DescribeExecution",
        "StopExecution",
        "GetExecutionHistory",
        "DescribeStateMachineForExecution",
        "RedriveExecution",
    },
    "resourceArn": {"ListTagsForResource", "TagResource", "UntagResource"},
}
_NO_RESOURCE = {
    "states": {"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat", "ListStateMachines"},
    "ssm": {
        "GetCommandInvocation",
        "ListCommands",
        "ListCommandInvocations",
        "DescribeInstanceInformation",
        "CancelCommand",
        "DescribeParameters",
    },
    "logs": {"DescribeLogGroups"},
}


def _states(call: Call, lookup: Lookup) -> list[Request] | None:
    for parameter, operations in _STATES_BY_PARAMETER.items():
        if call.operation in operations:
            return [Request(f"states:{call.operation}", str(call.params.get(parameter, "")))]
    return None


def _ssm_parameter_arn(call: Call, name: str) -> str:
    if name.startswith("arn:"):
        return name
    # AWS's public parameters (/aws/service/...) have no account in their ARN.
    account = "" if name.startswith("/aws/") else call.account
    return f"arn:aws:ssm:{call.region}:{account}:parameter/{name.lstrip('/')}"


def _ssm(call: Call, lookup: Lookup) -> list[Request] | None:
    params, operation = call.params, call.operation
    action = f"ssm:{operation}"
    if operation == "SendCommand":
        document = str(params.get("DocumentName", ""))
        if not document.startswith("arn:"):
            owner = "" if document.startswith(("AWS-", "AWSSupport-", "Amazon")) else call.account
            document = f"arn:aws:ssm:{call.region}:{owner}:document/{document}"
        requests = [Request(action, document)]
        for instance_id in params.get("InstanceIds") or []:
            tags = lookup.instance_tags(str(instance_id))
            requests.append(
                Request(
                    action,
                    ec2_arn(call, "instance", str(instance_id)),
                    _tags_context(tags, "ssm:resourceTag", "aws:ResourceTag"),
                )
            )
        if params.get("Targets"):
            requests.append(Request(action, ec2_arn(call, "instance", "*")))
        return requests
    if operation in {"GetParameter", "PutParameter", "DeleteParameter", "GetParameterHistory"}:
        return [Request(action, _ssm_parameter_arn(call, str(params.get("Name", ""))))]
    if operation in {"GetParameters", "DeleteParameters"}:
        return [Request(action, _ssm_parameter_arn(call, str(n))) for n in params.get("Names", [])]
    if operation == "GetParametersByPath":
        return [Request(action, _ssm_parameter_arn(call, str(params.get("Path", ""))))]
    return None


def _logs(call: Call, lookup: Lookup) -> list[Request] | None:
    group = str(call.params.get("logGroupName", ""))
    base = f"arn:aws:logs:{call.region}:{call.account}:log-group:{group}"
    action = f"logs:{call.operation}"
    if call.operation in {"CreateLogStream", "PutLogEvents", "GetLogEvents", "DeleteLogStream"}:
        return [Request(action, f"{base}:log-stream:{call.params.get('logStreamName', '')}")]
    if call.operation in {
        "CreateLogGroup",
        "DeleteLogGroup",
        "DescribeLogStreams",
        "FilterLogEvents",
        "PutRetentionPolicy",
    }:
        # AWS authorizes log-group actions on "...:log-group:<name>:log-stream:" (its error
        # messages name that ARN), which "...:log-group:<name>:*" covers.
        return [Request(action, f"{base}:log-stream:")]
    return None


# --- ECR and CodeBuild (container images, issue #12) ----------------------------------------

# ECR actions authorized on no resource; every other one on the repository it names.
_ECR_NO_RESOURCE = {"GetAuthorizationToken", "DescribeRegistry", "GetRegistryPolicy"}


def _ecr_repository_arn(call: Call, name: str, registry: str = "") -> str:
    return f"arn:aws:ecr:{call.region}:{registry or call.account}:repository/{name}"


def _ecr(call: Call, lookup: Lookup) -> list[Request] | None:
    params, action = call.params, f"ecr:{call.operation}"
    if call.operation in _ECR_NO_RESOURCE:
        return [Request(action, "*")]
    registry = str(params.get("registryId") or "")
    if call.operation == "DescribeRepositories":
        names = params.get("repositoryNames") or ["*"]
        return [Request(action, _ecr_repository_arn(call, str(n), registry)) for n in names]
    if params.get("repositoryName"):
        return [Request(action, _ecr_repository_arn(call, str(params["repositoryName"]), registry))]
    return None


def _codebuild_project_arn(call: Call, project: str) -> str:
    """A project's ARN from its name, its ARN, or a build's id (<project>:<uuid>) or ARN."""
    if project.startswith("arn:"):
        project = project.split(":build/", 1)[-1].split(":project/", 1)[-1]
    return f"arn:aws:codebuild:{call.region}:{call.account}:project/{project.split(':', 1)[0]}"


def _codebuild(call: Call, lookup: Lookup) -> list[Request] | None:
    params, operation = call.params, call.operation
    action = f"codebuild:{operation}"
    if operation in {"ListBuilds", "ListProjects", "ListCuratedEnvironmentImages"}:
        return [Request(action, "*")]
    if operation in {"BatchGetBuilds", "BatchGetProjects"}:
        items = params.get("ids") or params.get("names") or []
        arns = dict.fromkeys(_codebuild_project_arn(call, str(item)) for item in items)
        return [Request(action, arn) for arn in arns]
    if operation in {"StopBuild", "RetryBuild", "BatchDeleteBuilds"}:
        ids = params.get("ids") or [params.get("id", "")]
        arns = dict.fromkeys(_codebuild_project_arn(call, str(item)) for item in ids)
        return [Request(action, arn) for arn in arns]
    project = params.get("projectName") or params.get("name")
    if project:
        return [Request(action, _codebuild_project_arn(call, str(project)))]
    return None


# --- S3 --------------------------------------------------------------------------------------

_S3_OBJECT_SUBRESOURCES = {
    ("GET", "tagging"): "GetObjectTagging",
    ("GET", "acl"): "GetObjectAcl",
    ("GET", "uploadId"): "ListMultipartUploadParts",
    ("GET", "attributes"): "GetObjectAttributes",
    ("GET", "retention"): "GetObjectRetention",
    ("GET", "legal-hold"): "GetObjectLegalHold",
    ("PUT", "tagging"): "PutObjectTagging",
    ("PUT", "acl"): "PutObjectAcl",
    ("PUT", "retention"): "PutObjectRetention",
    ("PUT", "legal-hold"): "PutObjectLegalHold",
    ("POST", "restore"): "RestoreObject",
    ("DELETE", "uploadId"): "AbortMultipartUpload",
    ("DELETE", "tagging"): "DeleteObjectTagging",
}
_S3_BUCKET_SUBRESOURCES = {
    ("GET", "location"): "GetBucketLocation",
    ("GET", "versions"): "ListBucketVersions",
    ("GET", "uploads"): "ListBucketMultipartUploads",
    ("GET", "policy"): "GetBucketPolicy",
    ("GET", "tagging"): "GetBucketTagging",
    ("GET", "versioning"): "GetBucketVersioning",
    ("GET", "notification"): "GetBucketNotification",
    ("GET", "acl"): "GetBucketAcl",
    ("GET", "encryption"): "GetEncryptionConfiguration",
    ("PUT", "policy"): "PutBucketPolicy",
    ("PUT", "tagging"): "PutBucketTagging",
    ("PUT", "versioning"): "PutBucketVersioning",
    ("PUT", "notification"): "PutBucketNotification",
    ("PUT", "acl"): "PutBucketAcl",
    ("DELETE", "policy"): "DeleteBucketPolicy",
}


def _first_subresource(call: Call, table: Mapping[tuple[str, str], str], method: str) -> str | None:
    for (table_method, subresource), operation in table.items():
        if table_method == method and subresource in call.query:
            return operation
    return None


def _s3(call: Call, lookup: Lookup) -> list[Request] | None:
    method = call.method.upper()
    bucket_arn = f"arn:aws:s3:::{call.bucket}"
    if not call.bucket:
        return [Request("s3:ListAllMyBuckets", "*")]
    if call.key:
        object_arn = f"{bucket_arn}/{call.key}"
        operation = _first_subresource(call, _S3_OBJECT_SUBRESOURCES, method)
        if operation is None:
            operation = {
                "GET": "GetObject",
                "HEAD": "GetObject",
                "PUT": "PutObject",
                "POST": "PutObject",  # CreateMultipartUpload and CompleteMultipartUpload
                "DELETE": "DeleteObject",
            }.get(method)
        if operation is None:
            return None
        requests = [Request(f"s3:{operation}", object_arn)]
        source = call.headers.get("x-amz-copy-source") or call.headers.get("X-Amz-Copy-Source")
        if source and method == "PUT":
            source = source.lstrip("/").split("?", 1)[0]
            requests.append(Request("s3:GetObject", f"arn:aws:s3:::{source}"))
        return requests
    operation = _first_subresource(call, _S3_BUCKET_SUBRESOURCES, method)
    if operation is not None:
        return [Request(f"s3:{operation}", bucket_arn)]
    if method in {"GET", "HEAD"}:
        context = {
            f"s3:{name}": [str(_first(call.query.get(name)))]
            for name in ("prefix", "delimiter", "max-keys")
            if call.query.get(name) is not None
        }
        return [Request("s3:ListBucket", bucket_arn, context)]
    if method == "POST" and "delete" in call.query:
        keys = re.findall(rb"<Key>(.*?)</Key>", call.body or b"")
        return [Request("s3:DeleteObject", f"{bucket_arn}/{key.decode()}") for key in keys]
    if method == "PUT":
        return [Request("s3:CreateBucket", bucket_arn)]
    if method == "DELETE":
        return [Request("s3:DeleteBucket", bucket_arn)]
    return None


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _sts(call: Call, lookup: Lookup) -> list[Request] | None:
    # GetCallerIdentity needs no permission on AWS.
    return [] if call.operation == "GetCallerIdentity" else None


def _no_resource(call: Call, lookup: Lookup) -> list[Request] | None:
    if call.operation in _NO_RESOURCE.get(call.service, set()):
        return [Request(f"{call.service}:{call.operation}", "*")]
    return None


_BY_SERVICE: dict[str, Iterable[Callable[[Call, Lookup], list[Request] | None]]] = {
    "ec2": (_ec2,),
    "dynamodb": (_dynamodb,),
    "states": (_no_resource, _states),
    "ssm": (_no_resource, _ssm),
    "logs": (_no_resource, _logs),
    "s3": (_s3,),
    "sts": (_sts,),
    "ecr": (_ecr,),
    "codebuild": (_codebuild,),
}


def authorizations(call: Call, lookup: Lookup) -> list[Request] | None:
    """Every authorization the call needs (all must be allowed); None: an unmapped operation."""
    for mapper in _BY_SERVICE.get(call.service, ()):
        found = mapper(call, lookup)
        if found is not None:
            region_context = {"aws:requestedregion": [call.region]}
            return [
                Request(item.action, item.resource, {**region_context, **item.context})
                for item in found
            ]
    return None
