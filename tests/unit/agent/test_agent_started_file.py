"""`--started-file`: the agent's pid, written before anything that could fail or hang."""

from __future__ import annotations

import os

from instance_agent import main as agent_main
from instance_agent.errors import ConfigError


def test_given_started_file_when_the_agent_runs_then_its_pid_is_written_before_the_config_is_read(
    tmp_path, monkeypatch
):
    # Given a config the agent cannot use (the earliest way an attempt can fail)
    monkeypatch.setenv("RUNCTL_HOME", str(tmp_path / "home"))
    started = tmp_path / "home" / "agent-0123456789abcdef.started"
    seen_before_config: list[bool] = []

    def unusable(config_uri, **_):
        seen_before_config.append(started.exists())
        raise ConfigError("no such config")

    monkeypatch.setattr(agent_main, "run_agent", unusable)
    monkeypatch.setattr(agent_main, "configure_logging", lambda home: home.mkdir(parents=True))

    # When it is started with a started file
    status = agent_main.main(["--started-file", str(started), "--config", "s3://b/k.json"])

    # Then the file held its pid, whole, before the config was read; no temp file is left
    assert status == 2
    assert seen_before_config == [True]
    assert started.read_text() == str(os.getpid())
    assert sorted(path.name for path in started.parent.iterdir()) == [started.name]
