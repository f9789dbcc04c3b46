"""The embedded AWS emulator: moto's server in this process, with local-mode adapters attached."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import threading
import urllib.request
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType
from typing import Any
from unittest import mock

from moto.awslambda.models import LambdaFunction
from moto.core.config import default_user_config
from moto.ec2.models.instances import Instance, InstanceBackend
from moto.s3.models import S3Backend
from moto.server import ThreadedMotoServer
from moto.ssm.models import Command, SimpleSystemManagerBackend
from moto.ssm.responses import SimpleSystemManagerResponse
from werkzeug.serving import BaseWSGIServer

from lambdas.env import lambda_env
from lambdas.integrations.aws_clients import aws_client
from runctl.local import ec2_tags, lambda_bridge, waits
from runctl.local.capacity import CapacityFaults
from runctl.local.ec2_bridge import Ec2Bridge
from runctl.local.iam.enforcer import Enforcer
from runctl.local.iam.local import enforce_iam
from runctl.local.image_builds import ImageBuilds
from runctl.local.instances import LocalFleet, instance_base_env
from runctl.local.sfn_integration import PATCHES as SFN_INTEGRATION_PATCHES
from runctl.local.ssm_bridge import SsmBridge

REGION = "us-east-1"
_ORIGINAL_CREATE_MULTIPART = S3Backend.create_multipart_upload
_ORIGINAL_PUT_OBJECT = S3Backend.put_object
_ORIGINAL_COMPLETE_MULTIPART = S3Backend.complete_multipart_upload
_ORIGINAL_TARGET_INSTANCES = Command._get_instance_ids_from_targets
# moto completes a multipart upload with a put_object of its own: not an upload that begins.
_completing = threading.local()


class Emulator:
    """Start with `with Emulator(root) as emulator:`; everything is undone on exit."""

    def __init__(self, root: Path, boot_seconds: float = 0.0, wait_scale: float = 1.0) -> None:
        self.root = root
        self.boot_seconds = boot_seconds
        # Wait states last this fraction of their seconds (runctl/local/waits.py).
        self.wait_scale = wait_scale
        self.port = 0  # the server's, once started
        self.endpoint = ""
        self.fleet = LocalFleet(root, {}, boot_seconds)
        # Called with each key whose upload begins (fault injection keys on them).
        self.on_upload_started: list[Callable[[str], None]] = []
        # Instance types and markets EC2 refuses, answered over HTTP (runctl/local/capacity.py).
        self.capacity = CapacityFaults()
        self.image_builds: ImageBuilds  # once started (it needs the server's endpoint)
        self._stack = ExitStack()

    def __enter__(self) -> Emulator:
        self.root.mkdir(parents=True, exist_ok=True)
        stack = self._stack
        # Port 0: the server binds a free port itself (no window for another process to take it).
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        with contextlib.redirect_stdout(io.StringIO()):
            self._server.start()
        self.port = self._server.get_host_and_port()[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        stack.enter_context(
            mock.patch.dict(
                os.environ,
                {
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": REGION,
                    "AWS_REGION": REGION,
                    "AWS_ENDPOINT_URL": self.endpoint,
                    # moto's Step Functions engine calls Lambda through this port.
                    "MOTO_PORT": str(self.port),
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    "POWERTOOLS_METRICS_DISABLED": "true",
                    "POWERTOOLS_LOG_LEVEL": os.environ.get("POWERTOOLS_LOG_LEVEL", "WARNING"),
                },
            )
        )
        stack.enter_context(
            mock.patch.dict(default_user_config["stepfunctions"], {"execute_state_machine": True})
        )
        self.fleet.base_env = instance_base_env(self.endpoint, REGION, self.root)
        # CodeBuild's StartBuild runs `docker build` here (runctl/local/image_builds.py).
        self.image_builds = ImageBuilds(self.endpoint, REGION)
        ec2 = Ec2Bridge(self.fleet)
        ssm = SsmBridge(self.fleet)
        for target, name, replacement in (
            (LambdaFunction, "invoke", lambda_bridge.patched_invoke),
            (InstanceBackend, "run_instances", ec2.run_instances),
            (Instance, "terminate", ec2.terminate),
            (SimpleSystemManagerBackend, "send_command", ssm.send_command),
            (SimpleSystemManagerResponse, "describe_instance_information", ssm.describe_instances),
            (S3Backend, "create_multipart_upload", self._multipart_started),
            (S3Backend, "put_object", self._put_started),
            (S3Backend, "complete_multipart_upload", _complete_multipart),
            (Command, "_get_instance_ids_from_targets", _targeted_instances),
            (BaseWSGIServer, "handle_error", quiet_client_disconnects),
            *SFN_INTEGRATION_PATCHES,
            *waits.PATCHES,
            *ec2_tags.PATCHES,
            *self.image_builds.patches,
        ):
            # create=True: moto 5.2.5 has no DescribeInstanceInformation at all.
            stack.enter_context(
                mock.patch.object(target, name, _as_method(replacement), create=True)
            )
        stack.enter_context(self.capacity.installed())
        waits.SCALE.set(self.wait_scale)
        stack.callback(waits.SCALE.set, 1.0)
        # moto logs every failed state at ERROR; a failed run is reported by runctl itself.
        for noisy in ("werkzeug", "moto.stepfunctions"):
            logging.getLogger(noisy).setLevel(logging.CRITICAL)
        # Registered after the patches, so on exit the server stops before they are undone.
        stack.callback(self._server.stop)
        # moto's backends are process-wide: start from nothing, whatever ran here before.
        reset = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        urllib.request.urlopen(reset, timeout=30).close()  # noqa: S310 - our loopback server
        stack.callback(self.fleet.shutdown)
        # Before the server stops: a running build still writes its log through it.
        stack.callback(self.image_builds.shutdown)
        # Clients and settings cached by an earlier emulator point at its (closed) port.
        for cached in (aws_client, lambda_env):
            cached.cache_clear()
            stack.callback(cached.cache_clear)
        return self

    def enforce_iam(self) -> Enforcer:
        """From now on, the Lambdas and the instances are held to their roles' policies (call
        after the local deploy; see runctl/local/iam/)."""
        enforcer = enforce_iam(self._stack, REGION, self.fleet.base_env)
        # An image build's calls are its project's role's, as in CodeBuild.
        self.image_builds.access_key = (
            enforcer.policies.codebuild_key or self.image_builds.access_key
        )
        return enforcer

    def _put_started(self, backend: S3Backend, *args: Any, **kwargs: Any) -> Any:
        if not getattr(_completing, "active", False):
            self._upload_started(kwargs.get("key_name", args[1] if len(args) > 1 else ""))
        return _ORIGINAL_PUT_OBJECT(backend, *args, **kwargs)

    def _upload_started(self, key: object) -> None:
        for callback in self.on_upload_started:
            callback(str(key))

    def _multipart_started(self, backend: S3Backend, *args: Any, **kwargs: Any) -> Any:
        self._upload_started(kwargs.get("key_name", args[1] if len(args) > 1 else ""))
        return _ORIGINAL_CREATE_MULTIPART(backend, *args, **kwargs)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stack.close()


_ORIGINAL_HANDLE_ERROR = BaseWSGIServer.handle_error


def quiet_client_disconnects(server: BaseWSGIServer, request: Any, client_address: Any) -> None:
    """A client that went away mid-request (a local instance terminated while its agent talked to
    S3, a follow that was interrupted) is normal here: no traceback on the user's terminal.
    Anything else is reported as the server would."""
    if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
        return
    _ORIGINAL_HANDLE_ERROR(server, request, client_address)


def _targeted_instances(command: Command) -> list[str]:
    """moto 5.2.5 resolves a command with no Targets as a filter with no conditions: every
    instance in the region. So a SendCommand with InstanceIds=[one] ran on every live local
    instance (another run's agent started on it, two agents in one run's directories)."""
    if not command.targets:
        return []
    result: list[str] = _ORIGINAL_TARGET_INSTANCES(command)
    return result


def _complete_multipart(backend: S3Backend, *args: Any, **kwargs: Any) -> Any:
    _completing.active = True
    try:
        return _ORIGINAL_COMPLETE_MULTIPART(backend, *args, **kwargs)
    finally:
        _completing.active = False


def _as_method(function: object) -> object:
    """Bound methods of a bridge become plain functions taking moto's `self` first."""

    def method(self: object, *args: object, **kwargs: object) -> object:
        return function(self, *args, **kwargs)  # type: ignore[operator]

    return method
