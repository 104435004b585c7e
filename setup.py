"""Build hook: compile the pure core (ticker parsing, conditions, engine) with mypyc.

The per-tick hot path is about twice as fast compiled (bench/engine.py). The compiled modules
are the same typed Python source; when mypyc or a C compiler is missing, or
ALERTBOT_PURE=1 is set, the package installs as plain Python and behaves the same, slower.
"""

from __future__ import annotations

import os

from setuptools import setup

COMPILED = [
    "alertbot/ticker.py",
    "alertbot/rules/conditions.py",
    "alertbot/rules/model.py",
    "alertbot/rules/engine.py",
]


def _extensions() -> list[object]:
    if os.environ.get("ALERTBOT_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    extensions = mypycify(COMPILED, opt_level="3")
    for extension in extensions:
        extension.optional = True  # a failed compile leaves the pure-Python modules in place
    return extensions


setup(ext_modules=_extensions())
