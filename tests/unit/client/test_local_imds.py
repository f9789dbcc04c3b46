"""The local IMDS requires an IMDSv2 token, like an instance launched with HttpTokens=required."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from runctl.local.imds import LocalImds


@pytest.fixture
def imds():
    server = LocalImds({"instance-id": "i-0123", "placement/availability-zone": "us-east-1a"})
    server.start()
    yield server
    server.stop()


def _token(imds: LocalImds) -> str:
    request = urllib.request.Request(
        imds.endpoint + "latest/api/token",
        method="PUT",
        headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.read().decode()


def _get(imds: LocalImds, path: str, token: str | None) -> tuple[int, str]:
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    request = urllib.request.Request(imds.endpoint + "latest/meta-data/" + path, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, ""


def test_get_without_token_is_refused(imds):
    assert _get(imds, "instance-id", None) == (401, "")


def test_get_with_token_returns_metadata(imds):
    assert _get(imds, "instance-id", _token(imds)) == (200, "i-0123")


def test_spot_notice_is_404_until_injected(imds):
    token = _token(imds)
    assert _get(imds, "spot/instance-action", token)[0] == 404
    imds.set_notice("spot/instance-action", {"action": "terminate", "time": "2026-11-23T10:00:00Z"})
    status, body = _get(imds, "spot/instance-action", token)
    assert status == 200
    assert json.loads(body)["action"] == "terminate"


@pytest.mark.parametrize("gone", [BrokenPipeError, ConnectionResetError])
def test_an_agent_gone_mid_request_prints_no_traceback(imds, capsys, gone):
    # Given a request whose client went away (its local instance was terminated)
    try:
        raise gone()
    except OSError:
        imds._server.handle_error(None, ("127.0.0.1", 1))

    # Then nothing reaches the user's terminal; any other error still would
    assert capsys.readouterr().err == ""
    try:
        raise ValueError("a real bug")
    except ValueError:
        imds._server.handle_error(None, ("127.0.0.1", 1))
    assert "a real bug" in capsys.readouterr().err
