"""`runctl local run --data ./folder`: the folder goes into the emulated bucket under its
content's hash and the agent stages it like any S3 data; a bucket local mode lacks is refused."""

from __future__ import annotations

import os
import textwrap

import pytest

from runctl.data_folders import scan_data_folder
from runctl.specs import LocalData
from tests.e2e_local.conftest import invoke_cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e_local_data")]

READ_DATA = """
    import os
    import pathlib

    data = pathlib.Path(os.environ["RUNCTL_DATA_DIR"])
    out = pathlib.Path(os.environ["RUNCTL_OUTPUT_DIR"])
    for name in ("ds", "ref"):
        files = sorted(
            path.relative_to(data / name).as_posix()
            for path in (data / name).rglob("*")
            if path.is_file()
        )
        (out / f"{name}-files.txt").write_text("\\n".join(files))
    (out / "b.bin").write_bytes((data / "ds" / "sub" / "b.bin").read_bytes())
    (out / "alias.txt").write_bytes((data / "ds" / "alias.txt").read_bytes())
"""


def test_a_local_data_folder_reaches_the_script_byte_for_byte(tmp_path, monkeypatch):
    # Given a script that copies what it finds in $RUNCTL_DATA_DIR to its outputs, and a data
    # folder with a nested binary file, a link to a file inside it and a hidden file
    (tmp_path / "train.py").write_text(textwrap.dedent(READ_DATA))
    data = tmp_path / "ds"
    (data / "sub").mkdir(parents=True)
    payload = os.urandom(200_000)
    (data / "sub" / "b.bin").write_bytes(payload)
    (data / "a.txt").write_text("alpha\n")
    (data / "alias.txt").symlink_to(data / "a.txt")
    (data / ".secret").write_text("never uploaded\n")
    monkeypatch.chdir(tmp_path)
    # ... and, as a second source, the same content by its s3:// URI in the emulated bucket
    digest = scan_data_folder(LocalData(name="ds", path=data, argument="./ds")).digest
    ref = f"ref=s3://runctl-local-bucket/data/local/{digest}/"

    # When it runs locally with --data ./ds
    out = invoke_cli("local", "run", "train.py", "--data", "./ds", "--data", ref)

    # Then the folder was uploaded under its digest, and the script saw its files (not the
    # hidden one; the link as a file) with their bytes, under both names
    assert f"data ds: 3 files, 1 hidden left out, uploaded {len(payload) + 12:,} bytes" in out
    assert f"s3://runctl-local-bucket/data/local/{digest}/" in out
    outputs = next((tmp_path / ".runctl-local" / "runs").glob("run-*/outputs"))
    assert (outputs / "b.bin").read_bytes() == payload
    assert (outputs / "alias.txt").read_text() == "alpha\n"
    expected = "a.txt\nalias.txt\nsub/b.bin"
    assert (outputs / "ds-files.txt").read_text() == expected
    assert (outputs / "ref-files.txt").read_text() == expected


def test_data_from_a_bucket_local_mode_lacks_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "train.py").write_text("print('never runs')\n")
    monkeypatch.chdir(tmp_path)

    out = invoke_cli("local", "run", "train.py", "--data", "s3://my-data/ds/", exit_code=2)

    line = out.strip().splitlines()[-1]
    assert line.startswith("error: --data s3://my-data/ds/: local mode has no bucket 'my-data'")
    assert "pass a local folder instead, e.g. --data ds=./ds" in line
    assert "started run" not in out
