"""What a user asks to run (RunRequest), resolved against `.runctl.toml` into a RunPlan.

Shared by `runctl submit`, `runctl local run` and the SDK, so every way in makes the same RunSpec
and refuses the same mistakes before anything is uploaded or started.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from lambdas.models.run_spec import HyperparameterValue, RunSpec, SourceInfo
from runctl.errors import DataFolderError, ScriptNotFound, SpecError
from runctl.project_config import LoadedConfig, load_project_config
from runctl.specs import LocalData, build_spec, parse_data, parse_duration

# Stands in for the code archive while the rest of the spec is checked, before packaging.
_PENDING_CODE = {"s3_uri": "s3://placeholder-bucket/code/pending.tar.gz"}

Market = Literal["spot", "on-demand"]


@dataclass(frozen=True)
class RunRequest:
    """A run as a user describes it. None means "not given": `.runctl.toml`, then the default."""

    script: Path
    args: tuple[str, ...] = ()
    hyperparameters: Mapping[str, HyperparameterValue] = field(default_factory=dict)
    experiment: str | None = None
    instance_types: tuple[str, ...] | None = None
    market: Market | None = None
    # "s3://bucket/prefix/", a local folder or file (local mode only), or "name=" either
    data: tuple[str, ...] | None = None
    max_runtime: str | int | None = None  # "6h", or seconds
    project_dir: Path | None = None
    hyperparameters_as_args: bool | None = None


@dataclass(frozen=True)
class RunPlan:
    """A checked request: the project folder to package and every RunSpec field but the code.

    `local_data` are the --data sources on this machine (allowed in local mode only): in
    `fields` their entries hold a stand-in URI until `spec()` is given where they were uploaded.
    """

    script: Path
    project_root: Path
    fields: Mapping[str, Any]
    loaded: LoadedConfig
    local_data: tuple[LocalData, ...] = ()

    def pending_spec(self) -> RunSpec:
        """The RunSpec with a stand-in for the code: to check what is built on it early."""
        return build_spec({**self.fields, "code": _PENDING_CODE})

    def spec(
        self,
        code_uri: str,
        code_sha256: str,
        source: SourceInfo | None,
        data_uris: Mapping[str, str] | None = None,
    ) -> RunSpec:
        """The RunSpec to start, once the code is uploaded under `code_uri` and each local data
        source (by name) under its `data_uris` entry."""
        fields: dict[str, Any] = {
            **self.fields,
            "code": {"s3_uri": code_uri, "sha256": code_sha256},
            "data": self._data_entries(data_uris or {}),
        }
        if source is not None:
            fields["source"] = source.model_dump(mode="json")
        return build_spec(fields)

    def _data_entries(self, uploaded: Mapping[str, str]) -> list[dict[str, str]]:
        for item in self.local_data:
            if item.name not in uploaded:
                raise SpecError(
                    f"--data {item.argument!r}: a local folder must be uploaded before the run "
                    "starts (runctl local run does it)"
                )
        return [
            {**entry, "s3_uri": uploaded[entry["name"]]}
            if any(item.name == entry["name"] for item in self.local_data)
            else dict(entry)
            for entry in self.fields.get("data", [])
        ]


def new_run_id() -> str:
    """Sortable by start time, unique enough to name a Step Functions execution."""
    return f"run-{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def resolve_script(script: Path) -> Path:
    try:
        return script.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise ScriptNotFound(
            f"script not found: {script} (from {Path.cwd()}); check the path"
        ) from None


def config_for_script(script: Path) -> LoadedConfig:
    """The nearest `.runctl.toml` above the script, else above the working directory."""
    loaded = load_project_config(script.resolve().parent)
    return loaded if loaded.root is not None else load_project_config(Path.cwd())


def plan_run(request: RunRequest, local_data: bool = False) -> RunPlan:
    """Resolve paths and defaults, and validate the RunSpec: every mistake surfaces here.

    `local_data`: the caller uploads local --data folders itself (local mode); otherwise a
    local path is refused with how to put it in S3."""
    script = resolve_script(request.script)
    if not script.is_file():
        raise ScriptNotFound(f"{request.script} is a folder, not a script; name the .py file")
    loaded = config_for_script(script)
    config = loaded.config
    # The config's folder is the project when it holds the script (a config found from the
    # working directory may not).
    config_root = loaded.root if loaded.root and script.is_relative_to(loaded.root) else None
    root = (request.project_dir or config_root or script.parent).resolve()
    if not script.is_relative_to(root):
        raise SpecError(
            f"{script} is not inside the project folder {root}; pass --project-dir "
            "or move the script"
        )

    max_runtime = request.max_runtime if request.max_runtime is not None else config.max_runtime
    # Relative data paths: from the working directory on the command line, from the config's
    # folder in .runctl.toml.
    data, data_base = (
        (request.data, None) if request.data is not None else (config.data or (), loaded.root)
    )
    sources = [parse_data(item, data_base) for item in data]
    local = tuple(item for item in sources if isinstance(item, LocalData))
    for item in local:
        _check_local_data(item, local_data)
    fields: dict[str, Any] = {
        "entry_point": script.relative_to(root).as_posix(),
        "args": list(request.args),
        "hyperparameters": {**(config.hyperparameters or {}), **request.hyperparameters},
        "hyperparameters_as_args": _first(
            request.hyperparameters_as_args, config.hyperparameters_as_args, False
        ),
        "market": _first(request.market, config.market, "spot"),
        "experiment": _first(request.experiment, config.experiment, None),
        "data": [
            {"s3_uri": _pending_data_uri(item.name), "name": item.name}
            if isinstance(item, LocalData)
            else item.entry()
            for item in sources
        ],
    }
    instance_types = request.instance_types or config.instance_types
    if instance_types:
        fields["instance_types"] = list(instance_types)
    if max_runtime is not None:
        seconds = parse_duration(max_runtime) if isinstance(max_runtime, str) else max_runtime
        fields["limits"] = {"max_runtime_seconds": seconds}
    plan = RunPlan(script=script, project_root=root, fields=fields, loaded=loaded, local_data=local)
    plan.pending_spec()  # every RunSpec mistake, before packaging
    return plan


def _pending_data_uri(name: str) -> str:
    return f"s3://placeholder-bucket/data/local/pending/{name}/"


def _check_local_data(item: LocalData, allowed: bool) -> None:
    if not allowed:
        raise SpecError(
            f"--data {item.argument!r} is a local path, but runs on AWS stage data from S3: "
            f"upload it first (e.g. `aws s3 sync {item.path} s3://<runctl bucket>/data/"
            f"{item.name}/`) and pass that s3:// URI; `runctl local run` takes local folders"
        )
    if not item.path.exists():
        raise DataFolderError(
            f"--data {item.argument!r}: no such file or folder: {item.path}; pass an existing "
            "local folder or an s3:// URI"
        )


def _first(*values: Any) -> Any:
    return next((value for value in values if value is not None), None)
