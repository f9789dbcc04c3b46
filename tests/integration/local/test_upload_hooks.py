"""The emulator tells fault injection when an upload of a key begins: once per upload, whether a
single PUT or a multipart upload (moto completes one with a put_object of its own, which is not
a new upload: counted, it fired a 'second upload' the moment the first one finished)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from runctl.local.emulator import REGION, Emulator


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(Path(tmp_path_factory.mktemp("emulator"))) as running:
        yield running


def test_each_upload_begins_once_whether_single_or_multipart(emulator: Emulator, tmp_path: Path):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="hooks")
    started: list[str] = []
    emulator.on_upload_started.append(started.append)
    big = tmp_path / "big.bin"
    big.write_bytes(b"x" * (6 * 1024 * 1024))
    try:
        s3.put_object(Bucket="hooks", Key="small.json", Body=b"{}")
        config = TransferConfig(
            multipart_threshold=5 * 1024 * 1024, multipart_chunksize=5 * 1024**2
        )
        s3.upload_file(str(big), "hooks", "big.bin", Config=config)
    finally:
        emulator.on_upload_started.remove(started.append)

    assert started == ["small.json", "big.bin"]
    assert s3.head_object(Bucket="hooks", Key="big.bin")["ContentLength"] == 6 * 1024 * 1024
