"""The C core built with UndefinedBehaviorSanitizer, on the inputs that once overflowed.

feb0b41 fixed two signed overflows that a sanitizer fuzz of ``alertbot/rules/_fastcore.c``
found: the digit-by-digit reading of an event time longer than 18 digits, and a moves window's
expiry for event times near 2**63. Neither changed a result (the overflow happened to wrap), so
no ordinary test sees them. Here the core is compiled with ``-fsanitize=undefined
-fno-sanitize-recover=all`` and the engine runs over exactly those inputs in a subprocess, which
any sanitizer finding aborts. Skipped where there is no C compiler with the sanitizer.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "alertbot" / "rules" / "_fastcore.c"

#: the engine over the sanitized core (argv[1]), fed the inputs of feb0b41's two overflows
DRIVER = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("alertbot.rules._fastcore", sys.argv[1])
core = importlib.util.module_from_spec(spec)
sys.modules["alertbot.rules._fastcore"] = core
spec.loader.exec_module(core)
import alertbot.rules.engine as engine_module
from alertbot.rules.conditions import parse
from alertbot.rules.model import Rule
from alertbot.ticker import ParseStats
assert engine_module.Core is core.Core, "the engine must run the sanitized core"

def frame(time, close):
    return (
        '[{"e":"24hrMiniTicker","E":%d,"s":"BTCUSDT","c":"%s","o":"1","h":"2","l":"0.5",'
        '"v":"1","q":"1"}]' % (time, close)
    ).encode()

rule = Rule(id="up", condition=parse("rises 5% in 1h"), symbols=("BTCUSDT",))
engine, stats = engine_module.Engine([rule]), ParseStats()
engine.process_raw(frame(1000, "1"), stats)
if sys.argv[2] == "long-time":  # 23 digits, read one by one on Binance's literal layout
    engine.process_raw(frame(10**22, "1"), stats)
    assert stats.malformed == 1, stats
else:  # a window's expiry is its oldest price's time + 1h: past INT64_MAX here
    for i in range(4):
        engine.process_raw(frame(2**63 - 10 + i, "1.0%d" % i), stats)
    assert stats.tickers == 5, stats
print("clean")
"""


@pytest.fixture(scope="module")
def sanitized_core(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or not sys.platform.startswith("linux"):
        pytest.skip("needs a C compiler with UndefinedBehaviorSanitizer (Linux)")
    out = tmp_path_factory.mktemp("ubsan") / f"_fastcore{sysconfig.get_config_var('EXT_SUFFIX')}"
    flags = ["-fsanitize=undefined", "-fno-sanitize-recover=all", "-ffp-contract=off"]
    built = subprocess.run(
        [cc, "-shared", "-fPIC", "-O1", "-g", *flags, "-I", sysconfig.get_paths()["include"],
         str(SOURCE), "-o", str(out)],
        capture_output=True,
        text=True,
    )  # fmt: skip
    if built.returncode != 0:
        pytest.skip(f"cannot build the sanitized core: {built.stderr.strip()[-300:]}")
    return out


@pytest.mark.parametrize("case", ["long-time", "expiry-near-int64-max"])
def test_the_c_core_has_no_undefined_behaviour_on_inputs_that_once_overflowed(
    sanitized_core: Path, case: str
) -> None:
    """An event time of 23 digits, and moves windows whose expiry would pass INT64_MAX."""
    run = subprocess.run(
        [sys.executable, "-c", DRIVER, str(sanitized_core), case],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert "runtime error" not in run.stderr, run.stderr
    assert (run.returncode, run.stdout) == (0, "clean\n"), run.stderr
