"""The script's environment without installers or S3: the cache key, what it covers of the
requirements, the installers' error lines, and the image's own Python when there is nothing to
install."""

from __future__ import annotations

import shutil
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from instance_agent.environment import (
    NONE,
    EnvironmentFailed,
    ImagePython,
    PreparedEnvironment,
    cache_key,
    failure_line,
    prepare_environment,
    read_dependencies,
)
from instance_agent.errors import AgentError

AL2023 = ImagePython("al2023", "python3", "x86_64", layered=False)
PY39 = "3.9.23 (main, Jul 30 2025, 00:00:00) \n[GCC 11.5.0 20240719 (Red Hat 11.5.0-5)]"
PY311 = "3.11.7 (main, Jan 10 2024, 12:00:00) [GCC 12.2.0]"

# Output as the installers wrote it (uv 0.13.9, pip 23.0.1), into a file, not a terminal.
PIP_NOT_FOUND = """\
Looking in indexes: https://pypi.org/simple
WARNING: Location 'file:///opt/pypi/simple/no-such-package-runctl-test/' is ignored: it is neither a file nor a directory.
ERROR: Could not find a version that satisfies the requirement no-such-package-runctl-test==0.0.1 (from versions: none)
ERROR: No matching distribution found for no-such-package-runctl-test==0.0.1
"""  # noqa: E501
PIP_BUILD_FAILED = """\
Processing ./badpkg
  Preparing metadata (setup.py): started
  Preparing metadata (setup.py): finished with status 'error'
  error: subprocess-exited-with-error

  × python setup.py egg_info did not run successfully.
  │ exit code: 1
  ╰─> [1 lines of output]
      boom: cannot build
      [end of output]

  note: This error originates from a subprocess, and is likely not a problem with pip.
error: metadata-generation-failed

× Encountered error while generating package metadata.
╰─> See above for output.

note: This is an issue with the package mentioned above, not pip.
hint: See above for details.
"""  # noqa: RUF001
UV_NOT_FOUND = """\
Using Python 3.9.18 environment at: /opt/runctl/envs/abc
error: No solution found when resolving dependencies
  cause: Because no-such-package-runctl-test was not found in the package registry and you require no-such-package-runctl-test==0.0.1, we can conclude that your requirements are unsatisfiable.
"""  # noqa: E501
UV_BUILD_FAILED = """\
Using Python 3.9.18 environment at: env1
error: The build backend returned an error
  cause: Call to `setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed (exit status: 1)

         [stderr]
         boom: cannot build
"""  # noqa: E501
# Older uv releases name the cause "Caused by:" or draw it as a tree.
UV_CAUSED_BY = """\
error: Failed to fetch: `https://pypi.org/simple/numpy/`
  Caused by: Request failed after 3 retries
  Caused by: error sending request for url (https://pypi.org/simple/numpy/)
"""
UV_TREE = """\
  × No solution found when resolving dependencies:
error: No solution found when resolving dependencies:
  ╰─▶ Because torch==9.9 was not found in the package registry, your requirements are unsatisfiable.
"""  # noqa: RUF001


def _code(tmp_path: Path, files: dict[str, str]) -> Path:
    code = tmp_path / "code"
    for name, text in files.items():
        (code / name).parent.mkdir(parents=True, exist_ok=True)
        (code / name).write_text(text)
    return code


@pytest.mark.parametrize(
    ("label", "output", "line"),
    [
        (
            "pip",
            PIP_NOT_FOUND,
            "pip: ERROR: No matching distribution found for no-such-package-runctl-test==0.0.1",
        ),
        ("pip", PIP_BUILD_FAILED, "pip: error: metadata-generation-failed"),
        (
            "uv",
            UV_NOT_FOUND,
            "uv: error: No solution found when resolving dependencies: Because "
            "no-such-package-runctl-test was not found in the package registry and you require "
            "no-such-package-runctl-test==0.0.1, we can conclude that your requirements are "
            "unsatisfiable.",
        ),
        (
            "uv",
            UV_BUILD_FAILED,
            "uv: error: The build backend returned an error: Call to "
            "`setuptools.build_meta:__legacy__.get_requires_for_build_wheel` failed "
            "(exit status: 1)",
        ),
        (
            "uv",
            UV_CAUSED_BY,
            "uv: error: Failed to fetch: `https://pypi.org/simple/numpy/`: "
            "Request failed after 3 retries",
        ),
        (
            "uv",
            UV_TREE,
            "uv: error: No solution found when resolving dependencies: Because torch==9.9 was "
            "not found in the package registry, your requirements are unsatisfiable.",
        ),
        (
            "venv",
            "Error: Command '['/e/bin/python3', '-m', 'ensurepip']' returned non-zero exit "
            "status 1.\n",
            "venv: Error: Command '['/e/bin/python3', '-m', 'ensurepip']' returned non-zero "
            "exit status 1.",
        ),
        ("pip", "Collecting x\n  Killed\n\n", "pip: Killed"),
        ("uv", "", ""),
    ],
)
def test_the_failure_line_is_the_installers_own_error_line(label: str, output: str, line: str):
    assert failure_line(label, output) == line


def test_a_coloured_uv_error_is_read_without_its_escape_codes():
    coloured = (
        "\x1b[1m\x1b[31merror\x1b[39m\x1b[0m\x1b[1m:\x1b[0m No solution found\r\n"
        "  \x1b[1m\x1b[31mcause\x1b[39m\x1b[0m\x1b[1m:\x1b[0m Because x was not found.\r\n"
    )

    assert failure_line("uv", coloured) == "uv: error: No solution found: Because x was not found."


def test_a_long_error_line_is_cut_to_one_short_line():
    line = failure_line("pip", "ERROR: " + "x" * 2000 + "\n")

    assert len(line) == 500
    assert line.startswith("pip: ERROR: xxx")
    assert line.endswith("...")


def test_the_cache_key_is_stable_and_a_sha256():
    key = cache_key(b"numpy==2.0\n", AL2023, PY39, "uv")

    assert key == cache_key(b"numpy==2.0\n", AL2023, PY39, "uv")
    assert len(key) == 64
    assert set(key) <= set("0123456789abcdef")


@pytest.mark.parametrize(
    "change",
    [
        {"requirements": b"numpy==2.1\n"},
        {"python": PY311},
        {"image": ImagePython("ami-0123456789abcdef0", "python3", "x86_64", layered=False)},
        {"image": ImagePython("al2023", "python3", "arm64", layered=False)},
        {"image": replace(AL2023, ami_id="ami-0123456789abcdef0")},
        {"installer": "pip"},
    ],
    ids=["requirements", "python-version", "image", "architecture", "ami-id", "installer"],
)
def test_each_input_of_the_cache_key_changes_it(change: dict):
    base = {"requirements": b"numpy==2.0\n", "image": AL2023, "python": PY39, "installer": "uv"}
    changed = {**base, **change}

    def key(inputs: dict) -> str:
        return cache_key(
            inputs["requirements"], inputs["image"], inputs["python"], inputs["installer"]
        )

    assert key(changed) != key(base)


def test_two_amis_of_one_image_name_get_two_keys_and_one_ami_always_the_same():
    first = replace(AL2023, ami_id="ami-0aaaaaaaaaaaaaaaa")
    second = replace(AL2023, ami_id="ami-0bbbbbbbbbbbbbbbb")

    def key(image: ImagePython) -> str:
        return cache_key(b"numpy==2.0\n", image, PY39, "uv")

    assert key(first) != key(second)
    assert key(first) == key(replace(AL2023, ami_id="ami-0aaaaaaaaaaaaaaaa"))
    # Unknown (IMDS did not say): a key of its own, not one of an AMI's
    assert key(AL2023) not in (key(first), key(second))


def test_given_plain_requirements_then_the_key_covers_exactly_their_bytes(tmp_path):
    text = "numpy==2.0  # pinned\ntorch>=2.3; platform_machine == 'x86_64'\n"
    text += "--index-url https://pypi.org/simple\nrequests --hash=sha256:abc\n"
    code = _code(tmp_path, {"requirements.txt": text, "train.py": "print(1)"})

    dependencies = read_dependencies(code)

    assert dependencies.key_input == text.encode()
    assert dependencies.cacheable is True


def test_given_an_included_requirements_file_then_its_content_is_covered(tmp_path):
    code = _code(
        tmp_path,
        {
            "requirements.txt": "-r reqs/base.txt\n--constraint=reqs/pins.txt\n",
            "reqs/base.txt": "numpy\n-r more.txt\n",
            "reqs/more.txt": "rich\n",
            "reqs/pins.txt": "numpy==2.0\n",
        },
    )
    before = read_dependencies(code)

    (code / "reqs" / "more.txt").write_text("rich==13.0\n")  # nested, relative to base.txt
    after = read_dependencies(code)

    assert before.key_input != after.key_input
    assert after.cacheable is True


@pytest.mark.parametrize(
    "line",
    ["./wheels/tool-1.0-py3-none-any.whl", "tool @ file:///opt/wheels/tool.whl", "-f ./wheels x"],
)
def test_given_a_local_path_then_the_codes_files_are_covered(tmp_path, line: str):
    code = _code(tmp_path, {"requirements.txt": line + "\n", "wheels/readme": "v1"})
    before = read_dependencies(code)

    (code / "wheels" / "readme").write_text("v2")
    after = read_dependencies(code)

    assert before.key_input != after.key_input
    assert after.cacheable is True


@pytest.mark.parametrize("line", ["-e .", "--editable=./lib", "-e ./lib"])
def test_given_an_editable_local_install_then_the_environment_is_not_cached(tmp_path, line: str):
    code = _code(tmp_path, {"requirements.txt": line + "\n", "setup.py": ""})

    dependencies = read_dependencies(code)

    assert dependencies.cacheable is False
    assert str(code.resolve()).encode() in dependencies.key_input


def test_an_editable_vcs_install_is_cached(tmp_path):
    code = _code(tmp_path, {"requirements.txt": "-e git+https://github.com/o/r.git#egg=r\n"})

    assert read_dependencies(code).cacheable is True


def test_given_no_requirements_then_the_script_runs_with_the_images_python(tmp_path):
    code = _code(tmp_path, {"train.py": "print(1)"})
    image = ImagePython("al2023", "python3", "x86_64", layered=False)

    prepared = prepare_environment(
        code, image, None, "bucket", tmp_path / "envs", tmp_path, tmp_path / "env.log", uv=None
    )

    assert prepared == PreparedEnvironment(shutil.which("python3") or "", NONE, 0.0, None, None)
    assert Path(prepared.python).is_absolute()
    assert prepared.to_dict() == {
        "python": prepared.python,
        "action": "none",
        "seconds": 0.0,
        "installer": None,
        "cache_key": None,
    }
    assert not (tmp_path / "envs").exists()
    assert not (tmp_path / "env.log").exists()


def test_an_absolute_image_python_is_kept_as_it_is(tmp_path):
    code = _code(tmp_path, {"train.py": ""})
    image = ImagePython("dlami-pytorch", sys.executable, "x86_64", layered=True)

    prepared = prepare_environment(code, image, None, "b", tmp_path, tmp_path, tmp_path, uv=None)

    assert prepared.python == sys.executable


@pytest.mark.parametrize(
    ("interpreter", "message"),
    [
        (
            "python-runctl-missing",
            "the image's Python 'python-runctl-missing' was not found on PATH",
        ),
        ("/opt/pytorch-missing/bin/python", "'/opt/pytorch-missing/bin/python' was not found$"),
    ],
)
def test_given_the_images_python_is_missing_then_preparing_fails(tmp_path, interpreter, message):
    code = _code(tmp_path, {"train.py": ""})
    image = ImagePython("al2023", interpreter, "x86_64", layered=False)

    with pytest.raises(EnvironmentFailed, match=message) as caught:
        prepare_environment(code, image, None, "b", tmp_path, tmp_path, tmp_path, uv=None)

    assert isinstance(caught.value, AgentError)
