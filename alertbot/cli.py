"""The command line: ``alertbot run | check | replay | record``."""

from __future__ import annotations

import argparse
import gzip
import sys
import zlib
from collections.abc import Sequence

import orjson

from alertbot import __version__
from alertbot.errors import RuleError
from alertbot.notify.render import format_time, render
from alertbot.recording import read_lines
from alertbot.rules.engine import Engine
from alertbot.rules.loader import RuleFileError, load_files
from alertbot.rules.model import RuleSet
from alertbot.ticker import ParseStats


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertbot",
        description="Price alerts for Binance USD-M futures, delivered through Telegram.",
    )
    parser.add_argument("--version", action="version", version=f"alertbot {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the bot on the live feed")
    run.add_argument("--rules", nargs="+", default=[], metavar="FILE", help="rule files")

    check = sub.add_parser("check", help="validate rule files (exit 0 valid, 1 with errors)")
    check.add_argument("files", nargs="+", metavar="FILE")

    replay = sub.add_parser("replay", help="evaluate rules over a recording and print the alerts")
    replay.add_argument("recording", metavar="RECORDING", help=".jsonl or .jsonl.gz")
    replay.add_argument("--rules", nargs="+", required=True, metavar="FILE", help="rule files")
    replay.add_argument("--json", action="store_true", help="one JSON object per alert")

    record = sub.add_parser("record", help="capture the live feed to a recording")
    record.add_argument("--out", required=True, metavar="FILE")
    record.add_argument("--streams", nargs="+", metavar="STREAM")
    record.add_argument("--duration", metavar="D")
    return parser


def _load(files: Sequence[str]) -> RuleSet | None:
    try:
        return load_files(files)
    except RuleFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_check(files: Sequence[str]) -> int:
    ruleset = _load(files)
    if ruleset is None:
        return 1
    names = ", ".join(files)
    count = len(ruleset.rules)
    print(f"{names}: {count} rule{'s' if count != 1 else ''}, {len(ruleset.channels)} channels, OK")
    return 0


def cmd_replay(recording: str, files: Sequence[str], as_json: bool) -> int:
    ruleset = _load(files)
    if ruleset is None:
        return 1
    engine = Engine(ruleset.rules)
    stats = ParseStats()
    messages = alerts_total = corrupt = 0
    out = sys.stdout
    try:
        for number, raw in read_lines(recording):
            messages += 1
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                corrupt += 1
                print(f"{recording}:{number}: corrupt line skipped: {exc}", file=sys.stderr)
                continue
            for alert in engine.process_message(obj, stats):
                alerts_total += 1
                message = render(alert)
                if as_json:
                    record = {
                        "rule": alert.rule.id,
                        "symbol": alert.symbol,
                        "time": alert.time,
                        "price": alert.price,
                        "condition": alert.condition,
                        "message": message,
                    }
                    out.write(orjson.dumps(record).decode() + "\n")
                else:
                    out.write(f"{format_time(alert.time)}  {alert.rule.id}  {message}\n")
    except BrokenPipeError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        print(f"alertbot replay: cannot read {recording}: {exc}", file=sys.stderr)
        return 1
    skipped = f", {stats.malformed} malformed tickers skipped" if stats.malformed else ""
    bad_lines = f", {corrupt} corrupt lines skipped" if corrupt else ""
    print(
        f"replayed {messages} messages, {stats.tickers} tickers, "
        f"{alerts_total} alerts{skipped}{bad_lines}",
        file=sys.stderr,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "check":
            return cmd_check(args.files)
        if args.command == "replay":
            return cmd_replay(args.recording, args.rules, args.json)
    except RuleError as exc:  # defensive: no traceback for bad input
        print(f"alertbot: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `alertbot replay ... | head`
        sys.stderr.close()
        return 0
    if args.command == "run" and args.rules and _load(args.rules) is None:
        return 1
    print(
        f"alertbot {args.command}: the live Binance feed is not part of this version yet; "
        "use 'alertbot replay' to evaluate rules over a recording",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
