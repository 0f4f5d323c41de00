"""The app directory Flower builds a run from (``flwr run`` packs it into a FAB; the
simulation runs it in place): fedslim's ServerApp and a ClientApp, with the resolved run
config as ``[tool.flwr.app.config]``, so every engine feeds the apps through
``Context.run_config`` and nothing else."""

from __future__ import annotations

from pathlib import Path

from . import RunConfig


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_app_dir(
    directory: Path, run: RunConfig, clientapp: str = "fedslim.client.app:app"
) -> Path:
    lines = [
        "[project]",
        'name = "fedslim-run"',
        'version = "0.1.0"',
        "dependencies = []",
        "",
        "[tool.flwr.app]",
        'publisher = "fedslim"',
        "",
        "[tool.flwr.app.components]",
        'serverapp = "fedslim.server.app:app"',
        f'clientapp = "{clientapp}"',
        "",
        "[tool.flwr.app.config]",
        *(f"{k} = {_toml_value(v)}" for k, v in run.to_mapping().items()),
    ]
    (directory / "pyproject.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory
