"""Rehearse the Dockerfile without a Docker engine.

None runs on the CI machine, and the base image could not be pulled there anyway, so the image
itself is never built in CI. This runs what the image's build would run, on the same inputs:

1. the build context, as ``.dockerignore`` leaves it (from ``git ls-files``);
2. the build stage's ``COPY`` and ``RUN`` steps, in order, in a fresh virtual environment standing
   in for ``python:3.11-slim`` (``apt-get`` steps are skipped: the machine has the C compiler they
   install), with the image's ``/install`` prefix mapped to a temporary directory;
3. the runtime stage: every ``COPY`` source exists, the installed core is compiled, IANA's time
   zones load without the system's database (the slim image has none), ``alertbot check``
   accepts the rules file the image ships at the ``CMD``'s path, and the ``HEALTHCHECK``
   command, run against a started ``alertbot run``, reaches ``/healthz`` (503 here: no exchange
   to connect to, so the command must exit 1) on the port the image's ``ENV`` sets.

Usage: python .ci/docker_rehearsal.py  (from the repository root; exit 0 when all holds)
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatchcase(prefix, pattern):
                return True
            if bare != pattern and fnmatch.fnmatchcase(prefix.rsplit("/", 1)[-1], bare):
                return True
    return False


def context(dest: Path) -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    for name in files:
        if not ignored(name, patterns):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target)


def copy(args: str, ctx: Path, cwd: Path) -> None:
    *sources, target = shlex.split(args)
    dest = cwd / target if not target.startswith("/") else None
    if dest is None:
        raise SystemExit(f"COPY to an absolute path in the build stage: {args}")
    into = target.endswith("/")  # a directory: sources keep their names
    if into:
        dest.mkdir(parents=True, exist_ok=True)
    for src in sources:
        path = ctx / src
        if not path.exists():
            raise SystemExit(f"COPY {src}: not in the build context (.dockerignore?)")
        out = dest / path.name if into else dest
        if path.is_dir():
            shutil.copytree(path, out, dirs_exist_ok=True)
        else:
            shutil.copy2(path, out)


def main() -> int:
    steps = instructions(ROOT / "Dockerfile")
    stages: list[list[tuple[str, str]]] = []
    for word, rest in steps:
        if word == "FROM":
            stages.append([])
        stages[-1].append((word, rest))
    build, runtime = stages
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        ctx = tmp / "context"
        context(ctx)
        prefix = tmp / "install"
        env_dir = tmp / "base"
        venv.create(env_dir, with_pip=True)
        env = dict(os.environ, PATH=f"{env_dir / 'bin'}:{os.environ['PATH']}")
        env.pop("VIRTUAL_ENV", None)
        cwd = tmp / "root"
        print("== build stage")
        for word, rest in build:
            if word == "WORKDIR":
                cwd = tmp / "root" / rest.lstrip("/")
                cwd.mkdir(parents=True, exist_ok=True)
            elif word == "COPY":
                copy(rest, ctx, cwd)
            elif word == "RUN":
                if "apt-get" in rest:
                    print("   skipped (the machine has a C compiler):", rest[:60], "...")
                    continue
                command = rest.replace("/install", str(prefix))
                print("   RUN", command[:100], "...")
                subprocess.run(["bash", "-ec", command], cwd=cwd, env=env, check=True)
        print("== runtime stage")
        site = next(prefix.glob("lib/python3*/site-packages"))
        run_env = dict(env, PYTHONPATH=str(site), PATH=f"{prefix / 'bin'}:{env['PATH']}")
        image_env: dict[str, str] = {}
        health: list[str] = []
        cmd: list[str] = []
        entry: list[str] = []
        shipped: dict[str, Path] = {}
        for word, rest in runtime:
            if word == "COPY" and not rest.startswith("--from"):
                src, target = shlex.split(rest)
                if not (ctx / src).exists():
                    raise SystemExit(f"COPY {src}: not in the build context (.dockerignore?)")
                shipped[target] = ctx / src
            elif word == "ENV":
                for pair in shlex.split(rest):
                    key, _, value = pair.partition("=")
                    image_env[key] = value
            elif word == "HEALTHCHECK":
                health = json.loads(rest.split("CMD", 1)[1])
            elif word == "CMD":
                cmd = json.loads(rest)
            elif word == "ENTRYPOINT":
                entry = json.loads(rest)
        compiled = subprocess.run(
            ["python", "-c", "import alertbot.rules.engine as e, alertbot.rules._fastcore as f;"
             "print(e.__file__); print(f.__file__)"],
            env=run_env, check=True, capture_output=True, text=True, cwd=tmp,
        ).stdout.split()  # fmt: skip
        assert all(f.endswith(".so") and f.startswith(str(prefix)) for f in compiled), compiled
        print("   compiled core:", *compiled)
        # python:3.11-slim has no /usr/share/zoneinfo: /timezone's zones come from tzdata there
        zone = subprocess.run(
            ["python", "-c", "import zoneinfo; print(zoneinfo.ZoneInfo('Europe/Berlin').key)"],
            env=dict(run_env, PYTHONTZPATH=""), check=True, capture_output=True, text=True,
            cwd=tmp,
        ).stdout.strip()  # fmt: skip
        assert zone == "Europe/Berlin", zone
        print("   time zones without the system's:", zone)
        rules_path = cmd[cmd.index("--rules") + 1]
        rules = shipped[rules_path]
        subprocess.run([*entry, "check", str(rules)], env=run_env, check=True, cwd=tmp)

        port = image_env["ALERTBOT_HTTP_PORT"]
        probe = " ".join(health)
        assert f":{port}/healthz" in probe, f"HEALTHCHECK does not probe port {port}: {probe}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free = str(s.getsockname()[1])
        health = [part.replace(f":{port}/", f":{free}/") for part in health]
        bot_env = {
            **run_env,
            **image_env,
            "ALERTBOT_HTTP_PORT": free,
            "ALERTBOT_DB": str(tmp / "data" / "alertbot.db"),
            "ALERTBOT_BACKUP_DIR": str(tmp / "backups"),
            "ALERTBOT_BINANCE_WS_URL": "ws://127.0.0.1:9",  # nothing listens: the feed is down
            "ALERTBOT_BINANCE_REST_URL": "http://127.0.0.1:9",
        }
        args = [*entry, *[str(rules) if a == rules_path else a for a in cmd]]
        log = (tmp / "bot.log").open("w")
        bot = subprocess.Popen(args, env=bot_env, cwd=tmp, stdout=log, stderr=log)
        try:
            code = None
            for _ in range(300):
                time.sleep(0.1)
                r = subprocess.run(health, env=run_env, capture_output=True, text=True, cwd=tmp)
                if re.search(r"HTTP Error 503", r.stderr):
                    code = r.returncode
                    break
            if code != 1:
                print((tmp / "bot.log").read_text()[-3000:], file=sys.stderr)
                raise SystemExit("HEALTHCHECK never got /healthz's 503 from the running bot")
            print("   HEALTHCHECK reached /healthz: 503 (no exchange here) -> exit 1")
        finally:
            bot.terminate()
            bot.wait(15)
            log.close()
    print("docker rehearsal: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
