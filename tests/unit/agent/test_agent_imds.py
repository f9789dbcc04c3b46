"""The IMDSv2 client against a small local fake that insists on the session token."""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from instance_agent import imds
from instance_agent.setup import booted_ami

TOKEN = "tok-123"


class FakeImds:
    def __init__(self) -> None:
        self.paths: dict[str, str] = {"/latest/meta-data/instance-id": "i-0123456789abcdef0"}
        self.token_requests = 0
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
                if self.path != "/latest/api/token" or not self.headers.get(imds.TOKEN_TTL_HEADER):
                    self._reply(400)
                    return
                fake.token_requests += 1
                self._reply(200, TOKEN)

            def do_GET(self) -> None:
                if self.headers.get(imds.TOKEN_HEADER) != TOKEN:
                    self._reply(401)
                elif self.path in fake.paths:
                    self._reply(200, fake.paths[self.path])
                else:
                    self._reply(404)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        host, port = self.server.server_address[:2]
        self.endpoint = f"http://{host}:{port}/"
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()


@pytest.fixture
def fake() -> Iterator[FakeImds]:
    server = FakeImds()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_the_fake_refuses_a_get_without_the_token(fake):
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(fake.endpoint + "latest/meta-data/instance-id", timeout=5)

    assert raised.value.code == 401


def test_the_instance_id_is_read_with_a_session_token(fake):
    client = imds.ImdsClient(fake.endpoint)

    assert imds.instance_id(client) == "i-0123456789abcdef0"
    assert imds.instance_id(client) == "i-0123456789abcdef0"
    assert fake.token_requests == 1  # the token is reused


def test_the_endpoint_comes_from_the_environment(fake, monkeypatch):
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.endpoint.rstrip("/"))

    assert imds.instance_id() == "i-0123456789abcdef0"


def test_the_ami_id_is_read_and_none_when_the_service_has_none(fake):
    client = imds.ImdsClient(fake.endpoint)
    assert imds.ami_id(client) is None

    fake.paths["/latest/meta-data/ami-id"] = "ami-0123456789abcdef0"

    assert imds.ami_id(client) == "ami-0123456789abcdef0"


def test_the_booted_ami_comes_from_the_environments_endpoint(fake, monkeypatch):
    fake.paths["/latest/meta-data/ami-id"] = "ami-0123456789abcdef0"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", fake.endpoint)

    assert booted_ami() == "ami-0123456789abcdef0"


@pytest.mark.parametrize("answers", [False, True], ids=["unreachable", "no-ami-id"])
def test_without_an_ami_id_from_imds_the_booted_ami_is_none_and_said(
    fake, monkeypatch, caplog, answers
):
    # Given a metadata service that is not there, or has no ami-id
    endpoint = fake.endpoint if answers else "http://127.0.0.1:9/"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)

    # When the set-up asks for the AMI, then it goes on without one, saying so
    with caplog.at_level(logging.WARNING, logger="instance_agent.setup"):
        assert booted_ami() is None
    assert "cache key without it" in caplog.text


def test_no_spot_notice_is_none_and_a_notice_is_its_json(fake):
    client = imds.ImdsClient(fake.endpoint)
    assert imds.spot_instance_action(client) is None

    notice = {"action": "terminate", "time": "2026-11-23T10:00:00Z"}
    fake.paths["/latest/meta-data/spot/instance-action"] = json.dumps(notice)

    assert imds.spot_instance_action(client) == notice


def test_no_rebalance_recommendation_is_none_and_one_is_its_json(fake):
    client = imds.ImdsClient(fake.endpoint)
    assert imds.rebalance_recommendation(client) is None

    fake.paths["/latest/meta-data/events/recommendations/rebalance"] = '{"noticeTime": "t"}'

    assert imds.rebalance_recommendation(client) == {"noticeTime": "t"}


def test_an_expired_token_is_renewed_once(fake):
    client = imds.ImdsClient(fake.endpoint)
    client._token = "expired"

    assert imds.instance_id(client) == "i-0123456789abcdef0"
    assert fake.token_requests == 1


def test_an_unreachable_service_raises_imds_error_quickly():
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    client = imds.ImdsClient("http://127.0.0.1:9/", timeout=1.0)

    with pytest.raises(imds.ImdsError):
        imds.instance_id(client)
