"""The step handlers against moto: one table, one bucket, a launch template, default subnets.

Layers: `aws_credentials` (tests/conftest.py, autouse) -> `moto_backend` -> resources ->
`lambda_environment` -> helpers that run a handler the way Lambda does. Where moto cannot stand in
(SSM agent registration and command status), `fake_ssm` replaces the SSM client; `ec2_spy` wraps
the EC2 client to record RunInstances calls and refuse chosen ones.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from moto import mock_aws

from lambdas import wiring
from lambdas.constants import TAG_RUN_ID
from lambdas.handlers import finalize_run, launch_instance
from lambdas.integrations.aws_clients import aws_client
from lambdas.models.run_spec import RunSpec
from lambdas.models.steps import RunContext
from lambdas.observability import metrics

TABLE_NAME = "runctl-runs"
BUCKET = "runctl-test-bucket"
CODE_KEY = "code/" + "c" * 64 + ".tar.gz"
AGENT_KEY = "agent/instance_agent.zip"
INSTANCE_TYPES = ("g5.xlarge", "g4dn.xlarge")
EXECUTION_ARN = "arn:aws:states:us-east-1:123456789012:execution:TrainRun:{run_id}"
ROOT_DEVICE = "/dev/sda1"
START = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- emulator and resources


@pytest.fixture
def load_default_amis() -> bool:
    """Whether moto loads its ~1,300 public AMIs (0.3 s a test); parametrize to True if needed."""
    return False


@pytest.fixture(scope="session")
def boto3_session() -> boto3.session.Session:
    """One boto3 session for the whole run: it caches the service models it has parsed."""
    return boto3.session.Session()


class AwsClients:
    """boto3 clients for arranging and checking, one per service for the whole session.

    Making a client costs tens of milliseconds; moto intercepts a client whenever it was made.
    """

    def __init__(self, session: boto3.session.Session) -> None:
        self._session = session
        self._made: dict[str, Any] = {}

    def __getattr__(self, service: str) -> Any:
        if service not in self._made:
            self._made[service] = self._session.client(service, region_name="us-east-1")
        return self._made[service]


@pytest.fixture(scope="session")
def _test_clients(boto3_session: boto3.session.Session) -> AwsClients:
    return AwsClients(boto3_session)


@pytest.fixture
def aws(moto_backend: None, _test_clients: AwsClients) -> AwsClients:
    return _test_clients


@pytest.fixture
def moto_backend(
    monkeypatch: pytest.MonkeyPatch, load_default_amis: bool, boto3_session: boto3.session.Session
) -> Iterator[None]:
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", str(load_default_amis).lower())
    with mock_aws():
        # mock_aws drops boto3's default session, so each test would parse the EC2 model again
        # (about 0.5 s); clients made from a shared session are intercepted all the same.
        boto3.DEFAULT_SESSION = boto3_session
        yield


@pytest.fixture
def runs_table(aws: AwsClients) -> str:
    aws.dynamodb.create_table(
        TableName=TABLE_NAME,
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return TABLE_NAME


@pytest.fixture
def bucket(aws: AwsClients) -> str:
    s3 = aws.s3
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=CODE_KEY, Body=b"not really a tarball")
    s3.put_object(Bucket=BUCKET, Key=AGENT_KEY, Body=b"not really a zip")
    return BUCKET


@pytest.fixture
def launch_template(aws: AwsClients) -> str:
    response = aws.ec2.create_launch_template(
        LaunchTemplateName="runctl-instances",
        LaunchTemplateData={"IamInstanceProfile": {"Name": "runctl-instance"}},
    )
    return str(response["LaunchTemplate"]["LaunchTemplateId"])


@pytest.fixture
def image_id(aws: AwsClients) -> str:
    """A private AMI whose root device is /dev/sda1 (the AL2023 alias resolves to /dev/xvda)."""
    response = aws.ec2.register_image(
        Name="runctl-test-image", RootDeviceName=ROOT_DEVICE, Architecture="x86_64"
    )
    return str(response["ImageId"])


@pytest.fixture
def default_subnets(aws: AwsClients) -> list[tuple[str, str]]:
    """(subnet id, zone) of moto's default VPC, in zone order (what the Lambdas discover)."""
    subnets = aws.ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])[
        "Subnets"
    ]
    return sorted(
        ((item["SubnetId"], item["AvailabilityZone"]) for item in subnets), key=lambda pair: pair[1]
    )


@pytest.fixture
def lambda_environment(
    monkeypatch: pytest.MonkeyPatch, runs_table: str, bucket: str, launch_template: str
) -> dict[str, str]:
    values = {
        "RUNS_TABLE_NAME": runs_table,
        "BUCKET_NAME": bucket,
        "LOG_GROUP_NAME": "/runctl/runs",
        "LAUNCH_TEMPLATE_ID": launch_template,
        "AGENT_S3_URI": f"s3://{bucket}/{AGENT_KEY}",
        "DEFAULT_INSTANCE_TYPES": ",".join(INSTANCE_TYPES),
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


# ---------------------------------------------------------------- running handlers


@dataclass
class FakeLambdaContext:
    function_name: str = "runctl-step"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:runctl-step"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 60_000  # what get_remaining_time_in_millis answers

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture(autouse=True)
def _no_metrics_between_tests() -> Iterator[None]:
    yield
    metrics.clear_metrics()


@pytest.fixture
def invoke(lambda_context: FakeLambdaContext) -> Callable[[Any, dict[str, Any]], Any]:
    """Call a handler module's lambda_handler with a JSON round-tripped event, as Lambda would."""

    def call(handler_module: Any, event: dict[str, Any]) -> Any:
        return handler_module.lambda_handler(json.loads(json.dumps(event)), lambda_context)

    return call


class Clock:
    """Stands in for wiring.utc_now so records get predictable timestamps."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(wiring, "utc_now", fake)
    return fake


# ---------------------------------------------------------------- client stand-ins


class ClientOverrides:
    """wiring.aws_client with some services replaced; the rest are the real (moto) clients."""

    def __init__(self) -> None:
        self.by_service: dict[str, Any] = {}

    def __call__(self, service: str, **config: Any) -> Any:
        return self.by_service.get(service) or aws_client(service, **config)


@pytest.fixture
def client_overrides(monkeypatch: pytest.MonkeyPatch) -> ClientOverrides:
    overrides = ClientOverrides()
    monkeypatch.setattr(wiring, "aws_client", overrides)
    return overrides


def client_error(code: str, operation: str = "RunInstances") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"{code} (injected)"}}, operation)


class Ec2Spy:
    """The moto EC2 client, recording RunInstances requests and refusing the ones `refuse` names.

    `refuse(request)` returns an EC2 error code to raise instead of launching, or None.
    `reported_state` makes DescribeInstances (one instance by id, as CheckInstance asks) report
    another state: moto's instances are running from the start.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self.run_requests: list[dict[str, Any]] = []
        self.refuse: Callable[[dict[str, Any]], str | None] = lambda request: None
        self.reported_state: str | None = None

    def run_instances(self, **request: Any) -> Any:
        self.run_requests.append(request)
        code = self.refuse(request)
        if code:
            raise client_error(code)
        return self._real.run_instances(**request)

    def describe_instances(self, **kwargs: Any) -> Any:
        response = self._real.describe_instances(**kwargs)
        if self.reported_state:
            for reservation in response["Reservations"]:
                for instance in reservation["Instances"]:
                    instance["State"] = {"Code": 0, "Name": self.reported_state}
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def ec2_spy(client_overrides: ClientOverrides, moto_backend: None) -> Ec2Spy:
    spy = Ec2Spy(aws_client("ec2"))
    client_overrides.by_service["ec2"] = spy
    return spy


class FakeSsm:
    """SSM where moto falls short: agent registration and command status are set by the test.

    Anything else (GetParameter for the AMI aliases) goes to moto.
    """

    def __init__(self, real: Any) -> None:
        self._real = real
        self.meta = SimpleNamespace(region_name=real.meta.region_name)
        self.online: set[str] = set()
        self.sent: list[dict[str, Any]] = []
        self.invocation: dict[str, Any] | None = {"Status": "InProgress"}

    def describe_instance_information(self, Filters: list[dict[str, Any]]) -> Any:
        (wanted,) = [item["Values"] for item in Filters if item["Key"] == "InstanceIds"]
        return {
            "InstanceInformationList": [
                {"InstanceId": instance_id, "PingStatus": "Online"}
                for instance_id in wanted
                if instance_id in self.online
            ]
        }

    def send_command(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return {"Command": {"CommandId": f"cmd-{len(self.sent)}", **kwargs}}

    def get_command_invocation(self, CommandId: str, InstanceId: str) -> Any:
        if self.invocation is None:
            raise client_error("InvocationDoesNotExist", "GetCommandInvocation")
        return {"CommandId": CommandId, "InstanceId": InstanceId, **self.invocation}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@pytest.fixture
def fake_ssm(client_overrides: ClientOverrides, moto_backend: None) -> FakeSsm:
    fake = FakeSsm(aws_client("ssm"))
    client_overrides.by_service["ssm"] = fake
    return fake


# ---------------------------------------------------------------- runs and instances


@pytest.fixture
def make_run_context(image_id: str) -> Callable[..., dict[str, Any]]:
    """A RunContext as ValidateRun would return it (JSON), with spec overrides."""

    def build(run_id: str = "run-1", execution: str | None = None, **spec: Any) -> dict[str, Any]:
        parsed = RunSpec.model_validate(
            {
                "code": {"s3_uri": f"s3://{BUCKET}/{CODE_KEY}"},
                "entry_point": "train.py",
                "instance_types": list(INSTANCE_TYPES),
                "volume_gb": 64,
                "image": image_id,
                **spec,
            }
        )
        context = RunContext(
            run_id=run_id,
            execution_arn=EXECUTION_ARN.format(run_id=execution or run_id),
            attempt=1,
            spec=parsed,
            train_timeout_seconds=parsed.limits.max_runtime_seconds + 600,
        )
        return context.model_dump(mode="json")

    return build


@pytest.fixture
def run_context(make_run_context: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    return make_run_context()


@pytest.fixture
def record(lambda_environment: dict[str, str], clock: Clock) -> Callable[[dict], dict]:
    """Do what RecordRun does for a run context: put a PENDING item in the table."""

    def put(run: dict[str, Any]) -> dict[str, Any]:
        wiring.runs_table().create(RunContext.model_validate(run), clock().isoformat())
        return run

    return put


@pytest.fixture
def recorded_run(record: Callable[[dict], dict], run_context: dict[str, Any]) -> dict[str, Any]:
    """The default run after RecordRun."""
    return record(run_context)


@pytest.fixture
def launched(invoke: Callable[..., Any], recorded_run: dict[str, Any]) -> dict[str, Any]:
    """`$.instance` after LaunchInstance ran for the recorded run."""
    return dict(invoke(launch_instance, {"run": recorded_run}))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


@pytest.fixture
def read_record(aws: AwsClients) -> Callable[[str], dict[str, Any]]:
    """The whole run item as stored (not through the DAL's model), numbers as int or float."""
    deserializer = TypeDeserializer()

    def read(run_id: str) -> dict[str, Any]:
        item = aws.dynamodb.get_item(
            TableName=TABLE_NAME, Key={"run_id": {"S": run_id}}, ConsistentRead=True
        )["Item"]
        return {key: _plain(deserializer.deserialize(value)) for key, value in item.items()}

    return read


@pytest.fixture
def instances_of(aws: AwsClients) -> Callable[[str], list[dict[str, Any]]]:
    """Every instance (any state) tagged with a run id."""

    def find(run_id: str) -> list[dict[str, Any]]:
        reservations = aws.ec2.describe_instances(
            Filters=[{"Name": f"tag:{TAG_RUN_ID}", "Values": [run_id]}]
        )["Reservations"]
        return [instance for reservation in reservations for instance in reservation["Instances"]]

    return find


# ---------------------------------------------------------------- resume (issue #3)


@pytest.fixture
def set_record_fields(aws: AwsClients) -> Callable[..., None]:
    """Overwrite top-level fields of a run item, as the agent or a cancel would (no conditions)."""
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()

    def update(run_id: str, **fields: Any) -> None:
        aws.dynamodb.update_item(
            TableName=TABLE_NAME,
            Key={"run_id": {"S": run_id}},
            UpdateExpression="SET " + ", ".join(f"#k{i} = :v{i}" for i in range(len(fields))),
            ExpressionAttributeNames={f"#k{i}": name for i, name in enumerate(fields)},
            ExpressionAttributeValues={
                f":v{i}": serializer.serialize(value) for i, value in enumerate(fields.values())
            },
        )

    return update


@pytest.fixture
def interrupt_and_relaunch(
    invoke: Callable[..., Any], clock: Clock, lambda_environment: dict[str, str]
) -> Callable[..., tuple[dict, dict]]:
    """PlanNextAttempt after a spot warning on `instance`, then LaunchInstance for the next
    attempt: returns (the plan, the next attempt's `$.instance`)."""
    from lambdas.handlers import plan_next_attempt

    def run(run: dict[str, Any], instance: dict[str, Any]) -> tuple[dict, dict]:
        cause = json.dumps({"reason": "spot-interrupted"})
        plan = dict(
            invoke(
                plan_next_attempt,
                {
                    "run": run,
                    "instance": instance,
                    "error": {"Error": "Runctl.Interrupted", "Cause": cause},
                },
            )
        )
        assert plan["resume"] is True, plan
        return plan, dict(invoke(launch_instance, {"run": plan["run"]}))

    return run


@pytest.fixture
def finalize(invoke: Callable[..., Any], clock: Clock, lambda_environment: dict[str, str]):
    """One FinalizeRun call."""

    def call(event: dict[str, Any]) -> dict[str, Any]:
        return dict(invoke(finalize_run, event))

    return call


def instance_state(aws: AwsClients, instance_id: str) -> str:
    """The instance's EC2 state name (running, terminated, ...)."""
    reservations = aws.ec2.describe_instances(InstanceIds=[instance_id])
    return str(reservations["Reservations"][0]["Instances"][0]["State"]["Name"])
