"""Test-session guards."""

from __future__ import annotations

from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "alertbot"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test a compiled core module that is older than its source.

    An editable install compiles the core with mypyc in place, and Python imports the compiled
    module before the .py file: after an edit, the tests would silently run the old code.
    """
    stale = [
        str(so.relative_to(PACKAGE.parent))
        for so in PACKAGE.rglob("*.so")
        if (source := so.with_name(so.name.split(".")[0] + ".py")).exists()
        and source.stat().st_mtime > so.stat().st_mtime
    ]
    if stale:
        raise pytest.UsageError(
            "compiled modules older than their source: "
            + ", ".join(stale)
            + "; rebuild with `pip install -e .` (or delete them to test the pure-Python code)"
        )
