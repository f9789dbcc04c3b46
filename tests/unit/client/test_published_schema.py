"""The JSON Schema in the repo is the RunSpec model's, so console users write valid specs."""

from __future__ import annotations

import json
from pathlib import Path

from lambdas.models.run_spec import RunSpec

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "schemas" / "runspec.schema.json"


def test_published_schema_matches_the_model():
    published = json.loads(SCHEMA_FILE.read_text())
    assert published == RunSpec.model_json_schema(), "run `make schema` and commit the result"
