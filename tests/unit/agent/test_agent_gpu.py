"""The GPU check: nvidia-smi's answers parsed, and each way it can fail named in one line."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from instance_agent.errors import AgentError
from instance_agent.gpu import (
    GpuCheckFailed,
    GpuReport,
    check_gpus,
    parse_cuda_version,
    parse_gpu_query,
)

# Headers as nvidia-smi prints them: the wide layout of drivers 530+ and the older narrow one.
HEADER_570 = """\
Tue Mar  4 10:12:31 2025
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 570.86.15              Driver Version: 570.86.15      CUDA Version: 12.8     |
|-----------------------------------------+------------------------+----------------------+
| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |
| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |
|                                         |                        |               MIG M. |
|=========================================+========================+======================|
|   0  NVIDIA A10G                    On  |   00000000:00:1E.0 Off |                    0 |
|  0%   24C    P8              9W /  300W |       1MiB /  23028MiB |      0%      Default |
|                                         |                        |                  N/A |
+-----------------------------------------+------------------------+----------------------+
"""
HEADER_460 = """\
+-----------------------------------------------------------------------------+
| NVIDIA-SMI 460.32.03    Driver Version: 460.32.03    CUDA Version: 11.2     |
|-------------------------------+----------------------+----------------------+
"""
A100_X8 = "".join("NVIDIA A100-SXM4-40GB, 535.183.01\n" for _ in range(8))
NO_DRIVER = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n\n"
)


class FakeSmi:
    """Stands in for subprocess.run: answers the query and the plain call, or fails as told."""

    def __init__(self, query: Any = "NVIDIA A10G, 570.86.15\n", plain: Any = HEADER_570) -> None:
        self.answers = {"query": query, "plain": plain}
        self.calls: list[tuple[list[str], dict[str, Any]]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append((argv, kwargs))
        answer = self.answers["query" if len(argv) > 1 else "plain"]
        if isinstance(answer, BaseException):
            raise answer
        if isinstance(answer, tuple):
            code, stdout, stderr = answer
            return subprocess.CompletedProcess(argv, code, stdout, stderr)
        return subprocess.CompletedProcess(argv, 0, answer, "")


def test_given_one_gpu_then_its_name_and_driver_are_parsed():
    assert parse_gpu_query("NVIDIA A10G, 570.86.15\n") == [("NVIDIA A10G", "570.86.15")]


def test_given_eight_gpus_then_each_is_listed():
    assert parse_gpu_query(A100_X8) == [("NVIDIA A100-SXM4-40GB", "535.183.01")] * 8


def test_given_odd_spacing_and_blank_lines_then_fields_are_trimmed():
    text = "\n  Tesla T4 ,   535.104.05  \r\nNVIDIA H100 80GB HBM3,550.127.05\n\n"

    assert parse_gpu_query(text) == [
        ("Tesla T4", "535.104.05"),
        ("NVIDIA H100 80GB HBM3", "550.127.05"),
    ]


def test_given_no_gpu_lines_then_nothing_is_parsed():
    assert parse_gpu_query("") == []
    assert parse_gpu_query("No devices were found\n") == []


@pytest.mark.parametrize(
    ("header", "version"),
    [
        (HEADER_570, "12.8"),
        (HEADER_460, "11.2"),
        ("| NVIDIA-SMI 580.65.06   Driver Version: 580.65.06   CUDA Version:13.0 |", "13.0"),
        ("| NVIDIA-SMI 550.54.14   Driver Version: 550.54.14   CUDA Version: N/A |", None),
        ("No devices were found", None),
    ],
)
def test_the_cuda_version_is_read_from_the_header(header: str, version: str | None):
    assert parse_cuda_version(header) == version


def test_given_working_gpus_then_the_report_names_them_the_driver_and_cuda():
    fake = FakeSmi(query=A100_X8)

    report = check_gpus(run=fake, timeout=5)

    assert report == GpuReport("535.183.01", "12.8", ["NVIDIA A100-SXM4-40GB"] * 8)
    assert report.to_dict() == {
        "driver_version": "535.183.01",
        "cuda_version": "12.8",
        "gpus": ["NVIDIA A100-SXM4-40GB"] * 8,
    }
    query_argv, query_kwargs = fake.calls[0]
    assert query_argv == [
        "nvidia-smi",
        "--query-gpu=name,driver_version",
        "--format=csv,noheader",
    ]
    assert query_kwargs["timeout"] == 5
    assert fake.calls[1][0] == ["nvidia-smi"]


def test_given_no_nvidia_smi_then_the_check_fails_saying_there_is_no_driver():
    fake = FakeSmi(query=FileNotFoundError(2, "No such file or directory"))

    with pytest.raises(GpuCheckFailed) as caught:
        check_gpus(run=fake)

    assert str(caught.value) == "nvidia-smi not found: no NVIDIA driver on this image"
    assert isinstance(caught.value, AgentError)


def test_given_nvidia_smi_cannot_reach_the_driver_then_its_exit_and_message_are_named():
    fake = FakeSmi(query=(9, NO_DRIVER, ""))

    with pytest.raises(GpuCheckFailed) as caught:
        check_gpus(run=fake)

    assert str(caught.value) == f"nvidia-smi failed (exit 9): {NO_DRIVER.strip()}"
    assert "\n" not in str(caught.value)


def test_given_a_failure_on_stderr_then_the_last_stderr_line_is_named():
    fake = FakeSmi(query=(6, "", "Unable to determine the device handle\nNo devices were found\n"))

    with pytest.raises(
        GpuCheckFailed, match=r"^nvidia-smi failed \(exit 6\): No devices were found$"
    ):
        check_gpus(run=fake)


def test_given_an_empty_gpu_list_then_the_check_fails():
    with pytest.raises(GpuCheckFailed, match=r"^nvidia-smi lists no GPU$"):
        check_gpus(run=FakeSmi(query=""))


def test_given_nvidia_smi_hangs_then_the_check_fails_after_the_timeout():
    hung = subprocess.TimeoutExpired(["nvidia-smi"], 60, output=b"", stderr=b"waiting for GPU 0\n")

    with pytest.raises(GpuCheckFailed) as caught:
        check_gpus(run=FakeSmi(query=hung))

    assert str(caught.value) == "nvidia-smi did not answer within 15 s: waiting for GPU 0"


def test_given_the_header_call_fails_after_the_gpus_answered_then_cuda_is_unknown():
    fake = FakeSmi(plain=(15, "", "Failed to initialize NVML: Unknown Error"))

    report = check_gpus(run=fake)

    assert report == GpuReport("570.86.15", None, ["NVIDIA A10G"])


def test_a_custom_nvidia_smi_path_is_used_and_named():
    fake = FakeSmi(query=FileNotFoundError(2, "No such file or directory"))

    with pytest.raises(GpuCheckFailed, match=r"^/usr/bin/nvidia-smi not found"):
        check_gpus("/usr/bin/nvidia-smi", run=fake)

    assert fake.calls[0][0][0] == "/usr/bin/nvidia-smi"
