"""Executing a parameterised notebook kept in the repo (papermill) and rendering it to HTML
(nbconvert), with a Jupyter kernel for *this* interpreter registered by the platform itself.

A machine's default ``python3`` kernelspec runs whatever ``python`` is first on PATH, which may
not be the environment the platform runs in; the platform writes its own kernelspec (argv =
``sys.executable``) under ``FRAUD_PLATFORM_HOME/jupyter`` and puts that folder on ``JUPYTER_PATH``,
so nothing has to be installed or registered by hand. The kernel inherits the process environment
(``PYTHONPATH`` included), so the notebook imports the same code.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

KERNEL_NAME = "fraud-platform"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def ensure_kernel(home: Path) -> str:
    """Write (idempotently) a kernelspec running this interpreter and expose it to Jupyter."""
    jupyter_dir = home / "jupyter"
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": f"fraud-platform ({sys.executable})", "language": "python"}
    path = spec_dir / "kernel.json"
    if not path.exists() or json.loads(path.read_text()) != spec:
        path.write_text(json.dumps(spec, indent=1))
    paths = os.environ.get("JUPYTER_PATH", "").split(os.pathsep)
    if str(jupyter_dir) not in paths:
        os.environ["JUPYTER_PATH"] = os.pathsep.join([str(jupyter_dir), *[p for p in paths if p]])
    return KERNEL_NAME


@dataclass
class ExecutedNotebook:
    notebook: Path
    html: Path
    figures: list[str] = field(default_factory=list)  # base64 PNGs, in cell order
    seconds: float = 0.0


def run_notebook(name: str, output_dir: Path, parameters: Mapping[str, Any], home: Path,
                 timeout_seconds: int = 900) -> ExecutedNotebook:
    """Execute ``notebooks/<name>.ipynb`` with ``parameters`` into ``output_dir`` and render HTML.
    A failing cell raises (papermill's PapermillExecutionError names the cell); the partially
    executed notebook is still written for inspection."""
    import time

    import nbformat
    import papermill
    from nbconvert import HTMLExporter

    kernel = ensure_kernel(home)
    output_dir.mkdir(parents=True, exist_ok=True)
    executed = output_dir / f"{name}.ipynb"
    started = time.monotonic()
    papermill.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(executed), parameters=dict(parameters),
                               kernel_name=kernel, progress_bar=False, execution_timeout=timeout_seconds,
                               cwd=str(output_dir))
    notebook = nbformat.read(executed, as_version=4)
    html, _ = HTMLExporter().from_notebook_node(notebook)
    html_path = output_dir / f"{name}.html"
    html_path.write_text(html, encoding="utf-8")
    figures = [output["data"]["image/png"] for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []) if "image/png" in output.get("data", {})]
    return ExecutedNotebook(executed, html_path, figures, time.monotonic() - started)


def figures_markdown(figures: list[str], titles: list[str] | None = None) -> str:
    """The figures as inline Markdown images (what the Dagster UI renders in asset metadata)."""
    titles = titles or [f"figure {i + 1}" for i in range(len(figures))]
    return "\n\n".join(f"**{t}**\n\n![{t}](data:image/png;base64,{f if isinstance(f, str) else base64.b64encode(f).decode()})"
                       for t, f in zip(titles, figures))
