"""What a user asks to run (RunRequest), resolved against `.runctl.toml` into a RunPlan.

Shared by `runctl submit`, `runctl local run` and the SDK, so every way in makes the same RunSpec
and refuses the same mistakes before anything is uploaded or started.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from lambdas.models.run_spec import HyperparameterValue, RunSpec, SourceInfo
from runctl.errors import DataFolderError, ScriptNotFound, SpecError
from runctl.packaging import CodePackage, package_build_context
from runctl.project_config import LoadedConfig, load_project_config
from runctl.specs import LocalData, build_spec, parse_data, parse_duration

# Stands in for the code archive while the rest of the spec is checked, before packaging.
_PENDING_CODE = {"s3_uri": "s3://placeholder-bucket/code/pending.tar.gz"}
_PENDING_CONTEXT = ("s3://placeholder-bucket/contexts/pending.tar.gz", "0" * 64)

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
    # Containers (issue #12): an image to run in, or a Dockerfile to build one from (built in
    # the account; its context is the Dockerfile's folder unless build_context says otherwise).
    image: str | None = None
    build: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    build_context: Path | None = None


@dataclass(frozen=True)
class BuildPlan:
    """A `container.build` to package: the context folder and the Dockerfile's path in it."""

    context: Path
    dockerfile: str
    args: Mapping[str, str]


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
    build: BuildPlan | None = None

    def pending_spec(self) -> RunSpec:
        """The RunSpec with a stand-in for the code: to check what is built on it early."""
        return build_spec({**self.fields, "code": _PENDING_CODE, **self._container(None)})

    def spec(
        self,
        code_uri: str,
        code_sha256: str,
        source: SourceInfo | None,
        data_uris: Mapping[str, str] | None = None,
        context: tuple[str, str] | None = None,
    ) -> RunSpec:
        """The RunSpec to start, once the code is uploaded under `code_uri`, each local data
        source (by name) under its `data_uris` entry and a build's context as `context`
        (URI, SHA-256)."""
        if self.build is not None and context is None:
            raise SpecError("the build context must be uploaded before the run starts")
        fields: dict[str, Any] = {
            **self.fields,
            "code": {"s3_uri": code_uri, "sha256": code_sha256},
            "data": self._data_entries(data_uris or {}),
            **self._container(context),
        }
        if source is not None:
            fields["source"] = source.model_dump(mode="json")
        return build_spec(fields)

    @cached_property
    def context_package(self) -> CodePackage | None:
        """The build context, packaged (content-addressed: an unchanged context, same hash)."""
        if self.build is None:
            return None
        return package_build_context(self.build.context, self.build.dockerfile)

    def upload_context(
        self, upload: Callable[[CodePackage], tuple[str, int]]
    ) -> tuple[tuple[str, str] | None, int]:
        """Upload the build context (if any) with `upload`: its (URI, SHA-256) for spec(), and
        the bytes uploaded (0 when the same context is there already)."""
        package = self.context_package
        if package is None:
            return None, 0
        uri, uploaded = upload(package)
        return (uri, package.sha256), uploaded

    def _container(self, context: tuple[str, str] | None) -> dict[str, Any]:
        """The RunSpec's `container` for a build (a stand-in context until it is uploaded)."""
        if self.build is None:
            return {}
        uri, sha256 = context or _PENDING_CONTEXT
        build = {
            "context": {"s3_uri": uri, "sha256": sha256},
            "dockerfile": self.build.dockerfile,
            "args": dict(self.build.args),
        }
        return {"container": {"build": build}}

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
    image = _first(request.image, config.image)
    build = _build_plan(request, loaded)
    if image is not None and build is not None:
        raise SpecError("give --image or --build, not both (an image is either given or built)")
    if image is not None:
        fields["container"] = {"image": image}
    plan = RunPlan(
        script=script,
        project_root=root,
        fields=fields,
        loaded=loaded,
        local_data=local,
        build=build,
    )
    plan.pending_spec()  # every RunSpec mistake, before packaging
    return plan


def _build_plan(request: RunRequest, loaded: LoadedConfig) -> BuildPlan | None:
    """--build (from the working directory) or `build` in .runctl.toml (from its folder)."""
    config = loaded.config
    if request.build is not None:
        dockerfile, context, base = request.build, request.build_context, Path.cwd()
    elif config.build is not None:
        assert loaded.root is not None  # a config with keys was read from a file
        dockerfile = Path(config.build)
        context = Path(config.build_context) if config.build_context else None
        base = loaded.root
    else:
        if request.build_args or request.build_context:
            raise SpecError("--build-arg and --build-context need --build DOCKERFILE")
        return None
    dockerfile = (base / dockerfile).resolve()
    if not dockerfile.is_file():
        raise SpecError(f"--build {dockerfile}: no such Dockerfile")
    root = (base / context).resolve() if context is not None else dockerfile.parent
    if not root.is_dir():
        raise SpecError(f"--build-context {root}: not a folder")
    if not dockerfile.is_relative_to(root):
        raise SpecError(
            f"--build {dockerfile} is not inside the build context {root}: the build reads "
            "only the context"
        )
    args = {**(config.build_args or {}), **request.build_args}
    return BuildPlan(context=root, dockerfile=dockerfile.relative_to(root).as_posix(), args=args)


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
