"""$RUNCTL_OUTPUT_DIR, uploaded to runs/<run_id>/outputs/ once the script has exited."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .files import walk_files
from .layout import outputs_prefix
from .s3io import upload_file

logger = logging.getLogger(__name__)


def upload_outputs(s3: Any, directory: Path, bucket: str, run_id: str) -> int:
    """Upload every regular file under directory, keeping relative paths; return the count."""
    names = walk_files(directory)
    for relative in names:
        upload_file(s3, directory / relative, bucket, outputs_prefix(run_id) + relative)
    logger.info("uploaded %d output file(s)", len(names))
    return len(names)
