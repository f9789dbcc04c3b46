"""The emulator's HTTP server keeps quiet when a client goes away mid-request (a terminated local
instance, an interrupted follow) and still reports any other error."""

from __future__ import annotations

import pytest
from werkzeug.serving import BaseWSGIServer

from runctl.local.emulator import quiet_client_disconnects


def _server() -> BaseWSGIServer:
    """A server object as the handler sees it (never bound to a port)."""
    server = BaseWSGIServer.__new__(BaseWSGIServer)
    server.passthrough_errors = False
    return server


def _handled(error: BaseException) -> None:
    try:
        raise error
    except BaseException:
        quiet_client_disconnects(_server(), None, ("127.0.0.1", 50000))


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"), ConnectionResetError()])
def test_a_client_that_went_away_prints_nothing(error, capsys):
    _handled(error)

    assert capsys.readouterr().err == ""


def test_any_other_error_is_reported_as_the_server_would(capsys):
    _handled(ValueError("a real bug"))

    err = capsys.readouterr().err
    assert "Exception occurred during processing of request from ('127.0.0.1', 50000)" in err
    assert "ValueError: a real bug" in err
    assert BaseWSGIServer.handle_error is not quiet_client_disconnects  # patched only while running
