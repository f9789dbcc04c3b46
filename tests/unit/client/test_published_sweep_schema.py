"""The SweepSpec JSON Schema in the repo is the model's, so console users write valid sweeps."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lambdas.models.sweep_spec import SweepSpec
from runctl.cli import app

SCHEMA_FILE = Path(__file__).resolve().parents[3] / "schemas" / "sweepspec.schema.json"


def test_published_sweep_schema_matches_the_model():
    published = json.loads(SCHEMA_FILE.read_text())
    assert published == SweepSpec.model_json_schema(), "regenerate schemas/sweepspec.schema.json"


def test_runctl_schema_sweep_prints_the_published_schema():
    result = CliRunner().invoke(app, ["schema", "--sweep"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == json.loads(SCHEMA_FILE.read_text())
