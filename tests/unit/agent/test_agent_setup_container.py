"""A container run's set-up (issue #12): the image is prepared in a thread of its own, so the
attempt stages data and downloads its checkpoint meanwhile, and waits for it only before the
script starts; its errors reach the attempt then."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from instance_agent import setup as agent_setup
from instance_agent.config import ContainerSettings
from instance_agent.container_image import ImageFacts
from instance_agent.environment import EnvironmentFailed

from .test_agent_config import VALID


def _config(tmp_path: Path):
    import copy

    from instance_agent.config import parse_config

    raw = copy.deepcopy(VALID)
    raw["container"] = {
        "image": "repo/train:v1",
        "pull": "always",
        "ecr_registry": None,
        "interpreter": "python3",
    }
    return parse_config(raw)


def _set_up(tmp_path: Path):
    code = tmp_path / "code"
    code.mkdir()
    (code / "requirements.txt").write_text("numpy\n")  # not installed in a container run
    return agent_setup.set_up(
        _config(tmp_path),
        s3=None,
        home=tmp_path,
        code_dir=code,
        scratch=tmp_path,
        log_path=tmp_path / "environment.log",
        should_stop=lambda: False,
        ecr=object(),
    )


def test_set_up_returns_while_the_image_is_pulled_and_the_attempt_waits_for_it_later(
    tmp_path, monkeypatch
):
    release = threading.Event()
    pulled = ImageFacts("repo/train:v1", "sha256:" + "a" * 64, 12.5, True)
    asked: list[ContainerSettings] = []

    def slow_pull(settings, ecr, should_stop, log_path=None):
        asked.append(settings)
        assert release.wait(10), "the test never released the pull"
        return pulled

    monkeypatch.setattr(agent_setup, "prepare_image", slow_pull)

    setup = _set_up(tmp_path)  # returns with the pull still going: it would block otherwise

    assert setup.python == "python3" and setup.environment is None
    assert setup.image is not None
    assert setup.phases()["environment"] == {"action": "container", "image": "repo/train:v1"}
    release.set()
    assert setup.image.wait() is pulled
    assert asked[0].image == "repo/train:v1"
    assert setup.phases()["environment"] == {"action": "container", **pulled.to_dict()}


def test_a_failed_pull_reaches_the_attempt_when_it_waits(tmp_path, monkeypatch):
    def failing_pull(settings, ecr, should_stop, log_path=None):
        raise EnvironmentFailed("docker pull repo/train:v1 failed: manifest unknown")

    monkeypatch.setattr(agent_setup, "prepare_image", failing_pull)
    setup = _set_up(tmp_path)

    assert setup.image is not None
    with pytest.raises(EnvironmentFailed, match="manifest unknown"):
        setup.image.wait()
