"""`.runctl.toml`: found by walking up; a mistake is one line naming the file and the key."""

from __future__ import annotations

import pytest

from runctl.errors import ConfigError
from runctl.project_config import ProjectConfig, load_project_config


def test_the_nearest_file_above_the_start_is_used(tmp_path):
    (tmp_path / ".runctl.toml").write_text('stack_name = "Outer"\n')
    inner = tmp_path / "a" / "b"
    inner.mkdir(parents=True)
    (tmp_path / "a" / ".runctl.toml").write_text('stack_name = "Inner"\nregion = "eu-west-1"\n')

    loaded = load_project_config(inner)

    assert loaded.root == tmp_path / "a"
    assert loaded.config == ProjectConfig(stack_name="Inner", region="eu-west-1")


def test_no_file_means_no_defaults(tmp_path):
    loaded = load_project_config(tmp_path)
    assert loaded.root is None
    assert loaded.config == ProjectConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("experiment = \n", "not valid TOML"),
        ('instance_type = ["g5.xlarge"]\n', "key 'instance_type': unknown key"),
        ('instance_types = "g5.xlarge"\n', "key 'instance_types'"),
        ('region = "mars"\n', "key 'region'"),
        ("[hyperparameters]\nlr = [1, 2]\n", "key 'hyperparameters.lr'"),
    ],
)
def test_a_malformed_file_is_one_line_naming_the_key(tmp_path, text, expected):
    (tmp_path / ".runctl.toml").write_text(text)

    with pytest.raises(ConfigError) as raised:
        load_project_config(tmp_path)

    message = str(raised.value)
    assert expected in message
    assert str(tmp_path / ".runctl.toml") in message
    assert "\n" not in message
