"""The core (ticker, rules) imports no asyncio, network or Telegram code and reads no clock."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "alertbot"
CORE = [PACKAGE / "ticker.py", *sorted((PACKAGE / "rules").glob("*.py"))]
FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "ssl",
    "selectors",
    "threading",
    "websockets",
    "telegram",
    "httpx",
    "httpcore",
    "aiohttp",
    "requests",
    "urllib",
    "http",
    "apscheduler",
    "sqlite3",
    "time",
}
#: loaded (not imported by us) only when something does I/O; `time` is loaded by the stdlib itself
TRANSITIVE = {
    "asyncio",
    "socket",
    "ssl",
    "websockets",
    "telegram",
    "httpx",
    "httpcore",
    "aiohttp",
    "requests",
    "apscheduler",
    "sqlite3",
    "http.client",
    "urllib.request",
}
CLOCK_CALLS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter", "time_ns"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    # urllib.parse only splits strings (webhook URLs are validated with it)
    return {name.split(".")[0] for name in names if name != "urllib.parse"}


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_imports_nothing_forbidden(path: Path) -> None:
    assert _imports(path) & FORBIDDEN_MODULES == set()


@pytest.mark.parametrize("path", CORE, ids=lambda p: p.name)
def test_core_module_reads_no_clock(path: Path) -> None:
    calls = {
        node.func.attr
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert calls & CLOCK_CALLS == set()


def test_importing_the_core_loads_no_forbidden_module_transitively() -> None:
    code = (
        "import sys, alertbot.ticker, alertbot.rules.conditions, alertbot.rules.engine, "
        "alertbot.rules.model\n"
        "import importlib.util\n"
        "if importlib.util.find_spec('alertbot.rules.loader'): import alertbot.rules.loader\n"
        f"bad = sorted(m for m in sys.modules if m in {sorted(TRANSITIVE)!r})\n"
        "print(','.join(bad))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
