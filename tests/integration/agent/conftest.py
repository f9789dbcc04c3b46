"""Fixtures for whole agent runs in-process: moto for S3, DynamoDB and Logs, a fake Step Functions.

moto would reject a task token it never issued, so Step Functions is a recorder instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from instance_agent import imds
from instance_agent.attempt import Intervals
from instance_agent.main import run_agent
from instance_agent.result import AgentResult

REGION = "us-east-1"
BUCKET = "runctl-bucket"
DATA_BUCKET = "runctl-data"
TABLE = "runctl-runs"
LOG_GROUP = "/runctl/runs"
RUN_ID = "run-20261123-abc"
_HOLD_SECONDS = 60  # a held download waits this long for the event that releases it
FAST = Intervals(
    log_flush=0.05,
    checkpoint_sync=0.05,
    checkpoint_sync_watched=0.05,
    upload_copies=0.1,
    metrics_update=0.05,
    heartbeat=0.05,
    pipe_grace=5.0,
    imds_poll=0.05,
)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and one region; IMDS points at a closed local port (refused at once)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")


@pytest.fixture
def moto_backend(aws_credentials: None) -> Iterator[None]:
    with mock_aws():
        yield


class FakeStepFunctions:
    """Records the task-token calls the agent makes."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.ended = threading.Event()  # set by the first success or failure

    def send_task_heartbeat(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("heartbeat", kwargs))
        return {}

    def send_task_success(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("success", kwargs))
        self.ended.set()
        return {}

    def send_task_failure(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(("failure", kwargs))
        self.ended.set()
        return {}

    def named(self, name: str) -> list[dict[str, Any]]:
        return [kwargs for call, kwargs in self.calls if call == name]


def _touch_matching(signals: dict[str, Path], name: str) -> None:
    for fragment, path in signals.items():
        if fragment in name:
            path.touch()


class SignallingS3:
    """The moto client; after a write whose key contains a watched fragment, a file is touched,
    so a running script can wait for the agent's background work. Uploads of keys containing a
    `failing` fragment raise. `writes` lists the keys written, in the order the writes returned.
    With `hold`, downloads wait (up to _HOLD_SECONDS) for that event first."""

    def __init__(
        self,
        client: Any,
        signals: dict[str, Path],
        failing: set[str],
        writes: list[str],
        hold: threading.Event | None = None,
    ) -> None:
        self.client = client
        self.signals = signals
        self.failing = failing
        self.writes = writes
        self.hold = hold

    def download_file(self, bucket: str, key: str, filename: str, **kwargs: Any) -> None:
        if self.hold is not None and not self.hold.wait(_HOLD_SECONDS):
            raise AssertionError(f"download of {key} held for {_HOLD_SECONDS} s: no event came")
        self.client.download_file(bucket, key, filename, **kwargs)

    def upload_file(self, filename: str, bucket: str, key: str, **kwargs: Any) -> None:
        if any(fragment in key for fragment in self.failing):
            raise OSError(f"injected failure uploading {key}")
        self.client.upload_file(filename, bucket, key, **kwargs)
        self.writes.append(key)
        _touch_matching(self.signals, key)

    def put_object(self, **kwargs: Any) -> Any:
        response = self.client.put_object(**kwargs)
        self.writes.append(kwargs["Key"])
        _touch_matching(self.signals, kwargs["Key"])
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


class RecordingDynamoDB:
    """The moto client, with the statuses the agent wrote remembered in order (and signals)."""

    def __init__(self, client: Any, signals: dict[str, Path]) -> None:
        self.client = client
        self.signals = signals
        self.statuses: list[str] = []

    def update_item(self, **kwargs: Any) -> Any:
        # The agent names the fields it sets #f0, #f1, ... with values :v0, :v1, ... (#f0_1 is
        # the next part of a document path under #f0).
        names = kwargs.get("ExpressionAttributeNames", {})
        fields = {
            name: kwargs["ExpressionAttributeValues"][":v" + key[2:]]
            for key, name in names.items()
            if key.startswith("#f") and "_" not in key
        }
        if "status" in fields:
            self.statuses.append(fields["status"]["S"])
        response = self.client.update_item(**kwargs)
        for field_name in fields:
            _touch_matching(self.signals, f"dynamodb:{field_name}")
        return response

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@dataclass
class AgentHarness:
    """One run's AWS resources, its code archive and config, and a way to run the agent."""

    home: Path
    s3: Any
    dynamodb: Any
    logs: Any
    sfn: FakeStepFunctions = field(default_factory=FakeStepFunctions)
    bucket: str = BUCKET
    data_bucket: str = DATA_BUCKET
    run_id: str = RUN_ID
    ddb_recorder: RecordingDynamoDB | None = None
    signals: dict[str, Path] = field(default_factory=dict)
    failing_uploads: set[str] = field(default_factory=set)
    writes: list[str] = field(default_factory=list)  # keys the agent wrote, in order
    hold_downloads: threading.Event | None = None

    def put_run_item(self, status: str = "LAUNCHING", attempt: int = 1) -> None:
        self.dynamodb.put_item(
            TableName=TABLE,
            Item={
                "run_id": {"S": RUN_ID},
                "status": {"S": status},
                "attempt": {"N": str(attempt)},
                "updated_at": {"S": "2026-11-23T09:00:00+00:00"},
                # RecordRun creates the (empty) maps the agent writes into
                "setup": {"M": {}},
                "checkpoints": {"M": {}},
            },
        )

    def run_item(self) -> dict[str, Any]:
        return self.dynamodb.get_item(TableName=TABLE, Key={"run_id": {"S": RUN_ID}})["Item"]

    def upload_code(self, files: dict[str, str]) -> tuple[str, str]:
        """Tar the files into the bucket; return (s3 uri, sha256)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        body = buffer.getvalue()
        digest = hashlib.sha256(body).hexdigest()
        key = f"code/{digest}.tar.gz"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return f"s3://{BUCKET}/{key}", digest

    def spec(self, script: str, **fields: Any) -> dict[str, Any]:
        uri, digest = self.upload_code({"train.py": script})
        spec: dict[str, Any] = {
            "code": {"s3_uri": uri, "sha256": digest},
            "entry_point": "train.py",
            "interpreter": sys.executable,
            "args": [],
            "hyperparameters": {},
            "hyperparameters_as_args": False,
            "environment": {},
            "data": [],
        }
        spec.update(fields)
        return spec

    def write_config(self, spec: dict[str, Any], attempt: int = 1, **overrides: Any) -> str:
        key = f"runs/{RUN_ID}/attempts/{attempt}/agent-config.json"
        config = {
            "run_id": RUN_ID,
            "attempt": attempt,
            "region": REGION,
            "bucket": BUCKET,
            "table_name": TABLE,
            "log_group": LOG_GROUP,
            "task_token": "task-token-1",
            "heartbeat_seconds": 300,
            "instance_id": "i-0123456789abcdef0",
            "spec": spec,
            **overrides,
        }
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(config).encode())
        return f"s3://{BUCKET}/{key}"

    def run(self, config_uri: str, intervals: Intervals = FAST) -> AgentResult:
        def make_client(service: str, region: str | None) -> Any:
            if service == "stepfunctions":
                return self.sfn
            client = boto3.client(service, region_name=region or REGION)
            if service == "dynamodb":
                self.ddb_recorder = RecordingDynamoDB(client, self.signals)
                return self.ddb_recorder
            if service == "s3":
                return SignallingS3(
                    client, self.signals, self.failing_uploads, self.writes, self.hold_downloads
                )
            return client

        return run_agent(config_uri, make_client=make_client, home=self.home, intervals=intervals)

    @property
    def statuses(self) -> list[str]:
        return self.ddb_recorder.statuses if self.ddb_recorder else []

    def get_text(self, key: str, bucket: str = BUCKET) -> str:
        return self.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()

    def get_json(self, key: str) -> Any:
        return json.loads(self.get_text(key))

    def keys(self, prefix: str) -> list[str]:
        response = self.s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return sorted(entry["Key"] for entry in response.get("Contents", []))

    def log_messages(self, attempt: int = 1) -> list[str]:
        events = self.logs.get_log_events(
            logGroupName=LOG_GROUP, logStreamName=f"{RUN_ID}/{attempt}", startFromHead=True
        )["events"]
        return [event["message"] for event in events]


@pytest.fixture
def harness(moto_backend: None, tmp_path: Path) -> AgentHarness:
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    logs = boto3.client("logs", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.create_bucket(Bucket=DATA_BUCKET)
    dynamodb.create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "run_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "run_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    logs.create_log_group(logGroupName=LOG_GROUP)
    agent = AgentHarness(home=tmp_path / "runctl-home", s3=s3, dynamodb=dynamodb, logs=logs)
    agent.put_run_item()
    return agent


class GatedImds:
    """A local IMDSv2 endpoint (session token required) for notices. A notice is served only once
    its gate file exists (the script creates it when it is ready to be interrupted); after it was
    served `handled_after` times a marker file is touched: the agent polls in one thread and acts
    on a notice inside the poll that found it, so a second answer means the first was acted on."""

    TOKEN = "imds-token"

    def __init__(self) -> None:
        self.notices: dict[str, tuple[dict[str, Any], Path]] = {}
        self.markers: dict[str, tuple[int, Path]] = {}
        self.served: dict[str, int] = {}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(self, status: int, body: str = "") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_PUT(self) -> None:
                ok = self.path == "/latest/api/token" and self.headers.get(imds.TOKEN_TTL_HEADER)
                self._reply(200, fake.TOKEN) if ok else self._reply(400)

            def do_GET(self) -> None:
                if self.headers.get(imds.TOKEN_HEADER) != fake.TOKEN:
                    self._reply(401)
                    return
                body = fake.answer(self.path.removeprefix("/latest/meta-data/"))
                self._reply(200, body) if body is not None else self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.endpoint = f"http://{host}:{port}/"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def serve(
        self,
        path: str,
        body: dict[str, Any],
        gate: Path,
        handled_marker: Path | None = None,
        handled_after: int = 2,
    ) -> None:
        """Answer `path` (e.g. 'spot/instance-action') with body once `gate` exists."""
        self.notices[path] = (body, gate)
        if handled_marker is not None:
            self.markers[path] = (handled_after, handled_marker)

    def answer(self, path: str) -> str | None:
        if path not in self.notices:
            return None
        body, gate = self.notices[path]
        if not gate.exists():
            return None
        with self._lock:
            self.served[path] = self.served.get(path, 0) + 1
            count = self.served[path]
        if path in self.markers and count >= self.markers[path][0]:
            self.markers[path][1].touch()
        return json.dumps(body)


@pytest.fixture
def fake_imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedImds]:
    server = GatedImds()
    server.thread.start()
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", server.endpoint)
    yield server
    server.server.shutdown()
    server.server.server_close()
