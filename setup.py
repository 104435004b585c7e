"""Build hook: compile the pure core (ticker parsing, conditions, engine) with mypyc, and the
engine's per-tick filter (alertbot/rules/_fastcore.c, the C twin of alertbot/rules/core.py).

The compiled modules are the same typed Python source; the C filter does the work of a feed
frame without a Python object per tick (bench/engine.py). When mypyc or a C compiler is missing,
or ALERTBOT_PURE=1 is set, the package installs as plain Python and behaves the same, slower.
"""

from __future__ import annotations

import os
import sys

from setuptools import Extension, setup

COMPILED = [
    "alertbot/ticker.py",
    "alertbot/rules/conditions.py",
    "alertbot/rules/model.py",
    "alertbot/rules/engine.py",
]


#: no fused multiply-add: the compiled percentages (alertbot.ticker.percent, pct() in the C core)
#: must round exactly as Python's float arithmetic does, whatever -march the build uses
_FLOAT_FLAGS = [] if sys.platform == "win32" else ["-ffp-contract=off"]


def _fastcore() -> Extension:
    # optional: a failed compile leaves the pure-Python alertbot/rules/core.py in charge
    return Extension(
        "alertbot.rules._fastcore",
        ["alertbot/rules/_fastcore.c"],
        optional=True,
        extra_compile_args=_FLOAT_FLAGS,
    )


def _extensions() -> list[object]:
    if os.environ.get("ALERTBOT_PURE") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return [_fastcore()]
    extensions = mypycify(COMPILED, opt_level="3")
    for extension in extensions:
        extension.optional = True  # a failed compile leaves the pure-Python modules in place
        extension.extra_compile_args = [*extension.extra_compile_args, *_FLOAT_FLAGS]
    return [*extensions, _fastcore()]


setup(ext_modules=_extensions())
