"""What the single-topic benchmarks share: the machine's description and the reports."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jax


def machine():
    return f"{platform.machine()}, {jax.default_backend()}, {jax.device_count()} device(s), jax {jax.__version__}"


def write_report(out: Path, name: str, results: dict, table: list[str]) -> None:
    """Writes ``name.json`` and ``name.md`` under ``out`` and prints the table."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / f"{name}.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
