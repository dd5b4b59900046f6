"""Output helpers: one place decides between rich tables for people and JSON for programs."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape

console = Console()
err_console = Console(stderr=True)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, numpy scalars/arrays, paths and tuples -> plain JSON types (NaN -> null)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        return printable(obj)
    return obj


def printable(text: str) -> str:
    """``text`` safe to print and encode: undecodable file-name bytes become U+FFFD."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(to_jsonable(data), indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit(as_json: bool, data: Any, render: Callable[[], None]) -> None:
    """JSON of ``data`` on stdout with --json, else ``render()`` for people."""
    if as_json:
        emit_json(data)
    else:
        render()


def fail(message: str, *, as_json: bool = False, code: int = 2) -> None:
    """Print a clear error (JSON ``{"error": ...}`` with --json) and exit with ``code``."""
    import typer

    if as_json:
        emit_json({"error": message})
    else:
        err_console.print(f"[bold red]error:[/] {escape(printable(message))}", highlight=False)
    raise typer.Exit(code)
