"""The command line: ``alertbot run | check | replay | record | backup``."""

from __future__ import annotations

# the C half of `signal`, which builds its enums first (5 ms): the guard below comes first
import _signal  # type: ignore[import-not-found]


def _interrupted(signum: int, frame: object) -> None:
    """SIGINT while the command line starts (its imports, reading its arguments): exit 130
    quietly, as a Ctrl-C later does, not with a traceback through what was being imported."""
    raise SystemExit(130)


def _quiet_interrupts() -> object:
    """Make a Ctrl-C exit 130 quietly; the handler it replaces (None: not the main thread,
    where no handler can be set, or SIGINT ignored, as for a job started in the background)."""
    try:
        if _signal.getsignal(_signal.SIGINT) == _signal.SIG_IGN:
            return None
        return _signal.signal(_signal.SIGINT, _interrupted)
    except ValueError:
        return None


def _restore_interrupts(previous: object) -> None:
    if previous is not None:
        _signal.signal(_signal.SIGINT, previous)


# the rest of the imports and the module are read with it, then the handler before is back
# (a test importing this module keeps its own); main() sets it again until a command starts
_BEFORE = _quiet_interrupts()

import argparse  # noqa: E402
import importlib  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from typing import IO, TYPE_CHECKING, Any  # noqa: E402

# Only what parsing the command line needs is imported here: each command imports the rest
# (asyncio, YAML, the engine: a good part of a second) inside main(), where a Ctrl-C in the
# first moments is caught, rather than shown as a traceback through the imports.
from alertbot import __version__  # noqa: E402
from alertbot.errors import ConfigError, RuleError  # noqa: E402
from alertbot.text import mend, plural  # noqa: E402

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Mapping

    from alertbot.backup import Backups
    from alertbot.rules.model import RuleSet

#: ALERTBOT_LOG_LEVEL's values (any case)
LOG_LEVELS = ("debug", "info", "warning", "error")
#: the shortest ALERTBOT_HEARTBEAT (seconds): each beat is a message to every admin chat
HEARTBEAT_MIN = 60.0
#: the shortest ALERTBOT_BACKUP_EVERY (seconds): each copy reads the whole database
BACKUP_EVERY_MIN = 60.0
#: a stopping signal this soon after the first (seconds) is sent with it, not a second request
#: (systemd's SIGTERM and SIGHUP, ``timeout``'s signal to the process and to its group): far
#: shorter than anyone takes to see that a stop is slow and press Ctrl-C again
SAME_SIGNAL_WITHIN = 0.1
#: how many corrupt lines of a recording ``replay`` names one by one
CORRUPT_SHOWN = 10
#: how often ``record`` puts what it has written on disk (seconds)
RECORD_FLUSH_EVERY = 1.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alertbot",
        description="Price alerts for Binance USD-M futures, delivered through Telegram.",
        epilog="Settings come from ALERTBOT_* environment variables (README.md, Settings). "
        "'alertbot COMMAND --help' tells more about each command.",
    )
    parser.add_argument("--version", action="version", version=f"alertbot {__version__}")
    # not required to argparse: main() shows the commands when none is given
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="run the bot on the live feed",
        description="Run the bot: the live Binance feed, the rules, the alerts. Settings come "
        "from ALERTBOT_* environment variables (README.md, Settings). Without "
        "ALERTBOT_TELEGRAM_TOKEN (and ALERTBOT_WEBHOOK_URL) the alerts are printed to the "
        "console, one line each; the log goes to stderr. Ctrl-C or SIGTERM stops it.",
    )
    # extend: `--rules a.yaml --rules b.yaml` is both, not b.yaml alone (argparse's last wins)
    run.add_argument(
        "--rules", nargs="+", action="extend", default=[], metavar="FILE", help="rule files"
    )
    _config_option(run)

    check = sub.add_parser(
        "check",
        help="validate rule files (exit 0 valid, 1 with errors)",
        description="Validate rule files without running anything: exit 0 when every file is "
        "valid, 1 with each problem as a FILE:LINE:COL: message line on stderr.",
    )
    check.add_argument("files", nargs="+", metavar="FILE", help="rule files (YAML)")

    replay = sub.add_parser(
        "replay",
        help="evaluate rules over a recording and print the alerts",
        # the form that works: argparse's own shows [RECORDING] last, as if optional
        usage="%(prog)s RECORDING --rules FILE [FILE ...] [--json] [--config FILE]",
        description="Evaluate rules over a recording (from 'alertbot record'; plain or gzip) "
        "and print the alerts they fire on stdout, one a line; the summary goes to stderr.",
    )
    # optional to argparse only so that main() can take it back from a greedy --rules
    replay.add_argument("recording", nargs="?", metavar="RECORDING", help=".jsonl or .jsonl.gz")
    replay.add_argument(
        "--rules", nargs="+", action="extend", required=True, metavar="FILE", help="rule files"
    )
    replay.add_argument("--json", action="store_true", help="one JSON object per alert")
    _config_option(replay)  # ALERTBOT_MARKET

    record = sub.add_parser(
        "record",
        help="capture the live feed to a recording",
        description="Capture the live feed to a recording that 'alertbot replay' reads, until "
        "--duration has passed or Ctrl-C (or SIGTERM) stops it; the file is then closed whole.",
    )
    record.add_argument(
        "--out", required=True, action=_Once, metavar="FILE", help=".jsonl, or .jsonl.gz (gzip)"
    )
    record.add_argument(
        "--force",
        action="store_true",
        help="overwrite FILE when it exists (by default a file with something in it is refused)",
    )
    record.add_argument(
        "--streams",
        nargs="+",
        action="extend",  # a default here would be extended too: main() puts it in
        metavar="STREAM",
        help="stream names or symbols (default: !miniTicker@arr, the whole market)",
    )
    record.add_argument(
        "--duration",
        action=_Once,
        metavar="D",
        help="stop after D (e.g. 90s, 1h30m); default: until stopped",
    )
    _config_option(record)  # the feed's settings: market, URLs, timeouts

    backup = sub.add_parser(
        "backup",
        help="copy the database (watches, alerts) to a file, the bot running or not",
        description="Copy the database (ALERTBOT_DB: the chats' watches, the outbox, the "
        "firing state) to FILE with SQLite's online backup, which a running bot does not "
        "notice and which is never half a write: the copy is checked whole and then put in "
        "place. To restore, stop the bot and put the copy where ALERTBOT_DB names.",
    )
    backup.add_argument("--out", required=True, action=_Once, metavar="FILE", help="the copy")
    backup.add_argument(
        "--force", action="store_true", help="overwrite FILE when it exists (else refused)"
    )
    _config_option(backup)  # ALERTBOT_DB
    for command in (run, check, replay, record, backup):  # main()'s own errors, with its usage
        command.set_defaults(parser=command)
    return parser


class _Once(argparse.Action):
    """An option that takes one value, refused when given twice: argparse would keep the
    last, and ``--config base.env --config local.env`` reads like layered settings."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(f"argument {self.option_strings[-1]}: given twice; give it once")
        setattr(namespace, self.dest, values)


def _config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: the settings file ``run`` reads, so that ``record`` and ``replay``
    see the same market and feed as the bot it was written for."""
    parser.add_argument(
        "--config",
        action=_Once,
        metavar="FILE",
        help="settings file of ALERTBOT_NAME=value lines (the environment overrides it)",
    )


#: an http(s) URL in a log line, to its first white space or quote
_HTTP_URL = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)


def _shown_urls(text: str) -> str:
    if "://" not in text:
        return text
    from alertbot.rules.urls import shown_url

    return _HTTP_URL.sub(lambda m: shown_url(m.group()), text)


class Redact(logging.Filter):
    """Replace secrets (the bot token, webhook secrets) in every log record, whoever logs it:
    httpx logs request URLs, and Telegram's are ``.../bot<TOKEN>/sendMessage``. Every http(s)
    URL in a record is shown as :func:`~alertbot.rules.urls.shown_url` shows it, so that a
    webhook whose URL is its credential (Slack's, Discord's, a rule file's channel, which
    ``secrets`` cannot list) keeps that out of httpx's request lines too."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # arguments that do not fit: the handler reports it, as without us
            return True
        text = message
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        text = _shown_urls(text)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self.secrets:
                record.exc_text = record.exc_text.replace(secret, "[redacted]")
            record.exc_text = _shown_urls(record.exc_text)
        if text != message or record.args:
            record.msg, record.args = text, None  # formatted once, not again by each handler
        return True


class _SecondCache(logging.Formatter):
    """``formatTime`` with the clock text kept for the current second: an alert flood logs
    thousands of lines a second, and strftime per line showed in profiles."""

    _last: tuple[int, str | None, str] = (-1, None, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second, fmt, text = self._last
        if second != int(record.created) or fmt != datefmt:
            second, fmt = int(record.created), datefmt
            text = time.strftime(datefmt or self.default_time_format, self.converter(second))
            self._last = (second, fmt, text)
        if datefmt or not self.default_msec_format:
            return text
        return self.default_msec_format % (text, record.msecs)


class TextFormatter(_SecondCache):
    """``time level logger: message``, the format of ``logging.basicConfig`` below."""


class JsonFormatter(_SecondCache):
    """One JSON object per line: time, level, logger, message (and the exception, if any)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        import orjson  # here, not per line: a flood logs thousands a second

        super().__init__(*args, **kwargs)
        self._dumps = orjson.dumps

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": mend(record.getMessage()),  # orjson takes no lone surrogate
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            body["exception"] = mend(record.exc_text)
        return self._dumps(body).decode()


def _logging(secrets: Sequence[str] = (), env: Any = None, log_format: str = "text") -> None:
    from alertbot.settings import env_choice

    level = env_choice(env or os.environ, "ALERTBOT_LOG_LEVEL", "info", LOG_LEVELS).upper()
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(Redact(secrets))
        if log_format == "json":
            formatter: logging.Formatter = JsonFormatter()
            formatter.converter = time.gmtime
        else:
            formatter = TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        handler.setFormatter(formatter)
    if level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
        # two lines per run of each scheduled job ("Running job", "executed successfully"),
        # several a second, and two per job added at start; a job that fails is still logged
        # (at ERROR)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
        # python-telegram-bot logs an answer that is not JSON (a front end's HTML error page
        # while Telegram is down) at ERROR with a traceback, on every attempt for every chat,
        # then raises it as an error that the senders and the poller log, page quoted, once
        # per chat: its own lines only at DEBUG
        logging.getLogger("telegram.request.BaseRequest").setLevel(logging.CRITICAL)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.getLogger("alertbot.alerts").setLevel(logging.INFO)


async def _until_signalled(
    main: Any,
    duration: float | None = None,
    on_hup: Any = None,
    cut_short: str = "open deliveries resume at the next start",
) -> None:
    """Run ``main(stop)`` until SIGINT/SIGTERM (or ``duration`` seconds); SIGHUP calls
    ``on_hup()`` (a coroutine function) when given, else stops too (a closed terminal sends
    it, and its default action would end the process with nothing cleaned up). A second
    signal while stopping ends the process at once (exit 128 + the signal's number), saying
    ``cut_short``: what that leaves undone. Signals that arrive together are one request:
    systemd sends SIGTERM and SIGHUP at once, ``timeout`` and a process group's kill send one
    twice, and none of them means "do not wait"."""
    import asyncio

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    #: loop.time() of the first stopping signal; a repeat this soon after it is the same one
    first: list[float] = []
    stopping = [signal.SIGINT, signal.SIGTERM]
    if on_hup is None and hasattr(signal, "SIGHUP"):
        stopping.append(signal.SIGHUP)
    log = logging.getLogger("alertbot")

    def stop_or_exit(sig: signal.Signals) -> None:
        if not first:
            first.append(loop.time())
            if not stop.is_set():  # else --duration has passed: already stopping, unsaid
                log.info("%s: stopping (a second SIGINT or SIGTERM stops at once)", sig.name)
                stop.set()
                return
        elif loop.time() - first[0] < SAME_SIGNAL_WITHIN:
            return  # sent together with the first: no one asked twice
        # the operator will not wait for the grace: what is stored resumes at the next start
        log.warning("%s again: stopping at once; %s", sig.name, cut_short)
        logging.shutdown()
        os._exit(128 + sig)

    for sig in stopping:
        loop.add_signal_handler(sig, stop_or_exit, sig)
    hups: set[asyncio.Task[Any]] = set()
    if on_hup is not None:

        def hup() -> None:
            task = loop.create_task(on_hup())
            hups.add(task)
            task.add_done_callback(hups.discard)

        loop.add_signal_handler(signal.SIGHUP, hup)
    if duration is not None:
        loop.call_later(duration, stop.set)
    await main(stop)


def _unknown_settings() -> list[str]:
    """The environment's ALERTBOT_ names that are no setting (typos, mostly): each command that
    reads settings warns of them, or a misspelt ALERTBOT_MARKET would be ignored unsaid."""
    from alertbot.settings import unknown_setting

    return [
        problem
        for name in sorted(os.environ)
        if name.startswith("ALERTBOT_")
        and name != "ALERTBOT_PURE"  # the build's, not the bot's
        and (problem := unknown_setting(name)) is not None
    ]


class _StdoutError(Exception):
    """stdout refused what a command prints (a full disk under ``> file``; closed): the
    reason. Not an OSError, which replay takes for its recording's."""


def _out(text: str, *, flush: bool = False) -> None:
    """Print ``text`` on stdout, or raise :class:`_StdoutError` (BrokenPipeError stays one:
    ``| head`` is no error)."""
    out = sys.stdout
    try:
        if out is None:
            raise _StdoutError("it is closed")
        out.write(text)
        if flush:
            out.flush()
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise _StdoutError(_why(exc)) from None


def _load(files: Sequence[str]) -> RuleSet | None:
    from alertbot.rules.loader import RuleFileError, load_files

    try:
        return load_files(files)
    except RuleFileError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return None


def cmd_check(files: Sequence[str]) -> int:
    from alertbot.notify.routing import channel_env_problems

    ruleset = _load(files)
    if ruleset is None:
        return 1
    names = ", ".join(files)
    for problem in channel_env_problems(ruleset.channels):  # may be set where the bot runs
        print(f"{names}: warning: {problem} (alertbot run refuses to start so)", file=sys.stderr)
    rules, channels = plural(len(ruleset.rules), "rule"), plural(len(ruleset.channels), "channel")
    _out(f"{names}: {rules}, {channels}, OK\n", flush=True)
    return 0


def cmd_replay(
    recording: str, files: Sequence[str], as_json: bool, config: str | None = None
) -> int:
    import gzip
    import zlib

    import orjson

    from alertbot.feed.market import MARKETS
    from alertbot.notify.render import format_time, render
    from alertbot.recording import RecordingCutOff, read_lines
    from alertbot.rules.engine import Engine
    from alertbot.settings import env_choice, environment
    from alertbot.ticker import ParseStats

    # a recording of the COIN-M market is replayed as such with ALERTBOT_MARKET=coinm
    env = environment(os.environ, config)
    market = MARKETS[env_choice(env, "ALERTBOT_MARKET", "usdm", tuple(MARKETS))]
    for problem in _unknown_settings():
        print(f"alertbot replay: warning: environment: {problem}; ignored", file=sys.stderr)
    ruleset = _load(files)
    if ruleset is None:
        return 1
    engine = Engine(ruleset.rules)
    stats = ParseStats(market_st=market.st)
    messages = alerts_total = corrupt = 0
    # the first corrupt lines, named; held until a line reads, so that a file that is no
    # recording at all (the rule file in its place) gets one error instead
    held: list[str] | None = []

    def report(text: str) -> None:
        if held is None:
            print(text, file=sys.stderr)
        else:
            held.append(text)

    def release() -> None:
        nonlocal held
        for text in held or ():
            print(text, file=sys.stderr)
        held = None

    cut: RecordingCutOff | None = None
    try:
        for number, raw, whole in read_lines(recording):
            try:
                # the live feed's path: the engine reads the line's bytes without decoding them
                alerts = engine.process_raw(raw, stats)
            except orjson.JSONDecodeError as exc:
                if not whole:  # the last line, stopped short of its newline: a recorder killed
                    raise RecordingCutOff(recording, number - 1) from exc
                messages += 1
                corrupt += 1
                if corrupt <= CORRUPT_SHOWN:
                    report(f"{recording}:{number}: corrupt line skipped: {exc}")
                elif corrupt == CORRUPT_SHOWN + 1:  # damage spreads: thousands would bury all
                    report(f"{recording}: more corrupt lines follow; not shown one by one")
                continue
            messages += 1
            if held is not None:
                release()
            for alert in alerts:
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
                    _out(orjson.dumps(record).decode() + "\n")
                else:
                    _out(f"{format_time(alert.time)}  {alert.rule.id}  {message}\n")
    except RecordingCutOff as exc:
        cut = exc
    except BrokenPipeError:
        raise
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        release()
        why = _why(exc) if isinstance(exc, OSError) else str(exc)
        print(f"alertbot replay: cannot read {recording}: {why}", file=sys.stderr)
        return 1
    if corrupt and corrupt == messages:
        print(
            f"alertbot replay: {recording} is not a recording: no line of it is a JSON message "
            "(the recording comes first: alertbot replay RECORDING --rules FILE ...)",
            file=sys.stderr,
        )
        return 1
    release()
    if cut is not None:
        # a recorder killed mid-write leaves such a file: what it holds is still worth replaying
        print(
            f"alertbot replay: warning: {cut} (its end is missing: was the recorder stopped "
            "abruptly?); replayed every whole line before the cut",
            file=sys.stderr,
        )
    _out("", flush=True)  # the alerts still buffered: a full disk is told here, not at exit
    skipped = f", {plural(stats.malformed, 'malformed ticker')} skipped" if stats.malformed else ""
    bad_lines = f", {plural(corrupt, 'corrupt line')} skipped" if corrupt else ""
    foreign = (
        f", {plural(stats.foreign, 'ticker')} of another market skipped"
        f" (ALERTBOT_MARKET is {market.name})"
        if stats.foreign
        else ""
    )
    print(
        f"replayed {plural(messages, 'message')}, {plural(stats.tickers, 'ticker')}, "
        f"{plural(alerts_total, 'alert')}{skipped}{foreign}{bad_lines}",
        file=sys.stderr,
    )
    return 0


def _port(env: Any, name: str) -> int | None:
    """A TCP port setting (None when unset); one error for every wrong value, saying the range."""
    text = env.get(name, "").strip()
    if not text:
        return None
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{name}: expected a port from 1 to 65535, got {text!r}") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}: expected a port from 1 to 65535, got {port}")
    return port


def cmd_run(files: Sequence[str], config: str | None = None) -> int:
    import asyncio

    from alertbot.app import App, file_stamps
    from alertbot.chat.watches import ChatSettings
    from alertbot.feed.settings import FeedSettings
    from alertbot.notify.routing import channel_env_problems
    from alertbot.notify.settings import DeliverySettings
    from alertbot.rules.model import RuleSet
    from alertbot.settings import env_choice, env_seconds, environment
    from alertbot.store import hold_database

    if hasattr(signal, "SIGHUP"):
        # until the event loop takes it over (loading many rules takes seconds): a SIGHUP now
        # would end the process (its default action), not reload
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stamps = file_stamps(files)  # before reading them: an edit meanwhile is reloaded later
    ruleset = _load(files) if files else RuleSet()
    if ruleset is None:
        return 1
    unset = channel_env_problems(ruleset.channels)
    if unset:
        raise ConfigError("; ".join(unset))
    env = environment(os.environ, config)
    settings = FeedSettings.from_env(env)
    delivery = DeliverySettings.from_env(env)
    chat = ChatSettings.from_env(env)
    http_port = _port(env, "ALERTBOT_HTTP_PORT")
    grace = env_seconds(env, "ALERTBOT_SHUTDOWN_GRACE", 10.0)
    # at least long enough for the poller's stop to begin (it then ends its polling loop)
    chat_stop_timeout = env_seconds(env, "ALERTBOT_CHAT_STOP_TIMEOUT", 3.0, minimum=0.1)
    rules_check = env_seconds(env, "ALERTBOT_RULES_CHECK", 5.0)
    feed_down_after = env_seconds(env, "ALERTBOT_FEED_DOWN_AFTER", 120.0, minimum=1)
    heartbeat = env_seconds(env, "ALERTBOT_HEARTBEAT", 0.0)
    if 0 < heartbeat < HEARTBEAT_MIN:  # 1ms: an admin message every millisecond
        raise ConfigError(
            f"ALERTBOT_HEARTBEAT: must be at least {HEARTBEAT_MIN:g}s (or unset: no heartbeat), "
            f"got {env['ALERTBOT_HEARTBEAT'].strip()!r}"
        )
    backups = _backups(env, delivery.db)
    log_format = env_choice(env, "ALERTBOT_LOG_FORMAT", "text", ("text", "json"))
    env_choice(env, "ALERTBOT_LOG_LEVEL", "info", LOG_LEVELS)  # refused before anything is made
    lock = hold_database(delivery.db)  # held until run ends (ConfigError: another holds it)
    _logging(delivery.secrets(), env, log_format)
    log = logging.getLogger("alertbot")
    for problem in _unknown_settings():
        log.warning("environment: %s; ignored", problem)
    if not ruleset.rules:
        log.warning("no rules given (--rules FILE): nothing to alert on")
    if heartbeat and not (delivery.telegram_token and delivery.admin_chats):
        # a dead man's switch that never sends is worse than none: say so
        log.warning(
            "ALERTBOT_HEARTBEAT is set, but the heartbeat goes to the admin chats over Telegram: "
            "set ALERTBOT_TELEGRAM_TOKEN and ALERTBOT_ADMIN_CHATS, or no heartbeat is sent"
        )

    async def main(stop: asyncio.Event) -> None:
        app = App(
            ruleset,
            settings,
            delivery,
            chat,
            grace=grace,
            chat_stop_timeout=chat_stop_timeout,
            http_port=http_port,
            rule_files=files,
            rule_stamps=stamps,
            rules_check=rules_check,
            feed_down_after=feed_down_after,
            heartbeat=heartbeat,
            backups=backups,
            own_process=True,
        )
        apps.append(app)
        await app.run(stop)  # ConfigError: bad database or token, before any connection
        pipeline = app.pipeline
        summary = (
            f"stopped: {plural(pipeline.stats.tickers, 'ticker')}, "
            f"{plural(pipeline.alerts, 'alert')}, "
            f"{plural(pipeline.feed.stats.reconnects, 'reconnect')}"
        )
        if log_format == "json":  # every line on stderr one JSON object, as README says
            # handled whatever ALERTBOT_LOG_LEVEL is, as the plain line is printed whatever it is
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, summary, (), None))
        else:
            print(summary, file=sys.stderr)

    apps: list[Any] = []

    async def on_hup() -> None:
        if apps:
            await apps[0].reload()

    try:
        asyncio.run(_until_signalled(main, on_hup=on_hup))
    finally:
        if lock is not None:
            lock.close()
    return 0


def _backups(env: Mapping[str, str], db: str) -> Backups | None:
    """The scheduled copies ALERTBOT_BACKUP_DIR asks for (None: none), checked at start."""
    from alertbot.backup import Backups
    from alertbot.settings import env_int, env_seconds

    directory = env.get("ALERTBOT_BACKUP_DIR", "").strip()
    every = env_seconds(env, "ALERTBOT_BACKUP_EVERY", 86400.0, minimum=BACKUP_EVERY_MIN)
    keep = env_int(env, "ALERTBOT_BACKUP_KEEP", 7, minimum=1)
    return Backups(db, directory, every=every, keep=keep) if directory else None


def _why(exc: OSError) -> str:
    """An OSError as a user reads it: ``No such file or directory``, not ``[Errno 2] No such
    file or directory: 'x.jsonl'`` after a message that already names the file."""
    return exc.strerror or str(exc)


def _sync(fh: IO[bytes]) -> None:
    """fsync a recording's file; nothing for one that cannot be synced (a pipe, a terminal:
    ``--out /dev/stdout``)."""
    import errno

    try:
        os.fsync(fh.fileno())
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EROFS, errno.ENOTSUP, errno.EBADF):
            raise


def cmd_record(
    out_path: str,
    streams: Sequence[str],
    duration: str | None,
    config: str | None = None,
    force: bool = False,
) -> int:
    import asyncio

    import orjson

    from alertbot.feed.client import Feed
    from alertbot.feed.market import normalise_stream
    from alertbot.feed.settings import FeedSettings
    from alertbot.feed.symbols import SymbolDirectory, unknown_symbols
    from alertbot.recording import (
        STDIO,
        Overlap,
        RecordingBusy,
        RecordingExists,
        create_recording,
    )
    from alertbot.settings import SECRET_VARS, env_choice, environment, parse_seconds
    from alertbot.tasks import cancel_and_wait

    try:
        wanted = [normalise_stream(s) for s in streams]
    except ValueError as exc:
        print(f"alertbot record: {exc}", file=sys.stderr)
        return 1
    seconds = None
    if duration is not None:
        try:
            # "" (a script's unset variable): not "no limit", which is --duration left out
            seconds = parse_seconds(duration) if duration.strip() else 0.0
        except ValueError as exc:
            print(f"alertbot record: --duration: {exc}", file=sys.stderr)
            return 1
        if seconds <= 0:  # many tools read 0 as "no limit": it would record nothing
            print(
                "alertbot record: --duration: expected a duration longer than 0 like 90s or "
                f"1h30m, got {duration!r} (leave --duration out to record until Ctrl-C)",
                file=sys.stderr,
            )
            return 1
    env = environment(os.environ, config)
    settings = FeedSettings.from_env(env)
    log_format = env_choice(env, "ALERTBOT_LOG_FORMAT", "text", ("text", "json"))
    env_choice(env, "ALERTBOT_LOG_LEVEL", "info", LOG_LEVELS)  # refused before the file is made
    shown = "stdout" if out_path == STDIO else out_path
    try:
        # checked before anything else (main()), and again here in the one step that opens it:
        # a file written meanwhile (by another recorder, or anything) is not overwritten
        fh = create_recording(out_path, force=force)
    except RecordingExists as exc:  # the first check's verdict, found late: its exit status
        print(
            f"alertbot record: --out {out_path}: the file exists ({plural(exc.size, 'byte')}, "
            "written since record started); give --force to overwrite it",
            file=sys.stderr,
        )
        return 2
    except RecordingBusy:
        print(
            f"alertbot record: cannot write {shown}: another alertbot record is writing to it",
            file=sys.stderr,
        )
        return 1
    except OSError as exc:
        print(f"alertbot record: cannot write {shown}: {_why(exc)}", file=sys.stderr)
        return 1
    # as run logs, the --config file's settings included
    _logging([env.get(var, "") for var in SECRET_VARS], env, log_format)
    for problem in _unknown_settings():
        logging.getLogger("alertbot").warning("environment: %s; ignored", problem)
    count = 0
    overlap = Overlap()
    reasons: dict[str, str] = {}  # the exchange's, by refused stream
    all_refused = False
    write_error: OSError | None = None
    stopping: list[asyncio.Event] = []  # main()'s stop, once it runs

    def sink(obj: Any, raw: str | bytes) -> None:
        nonlocal count, write_error
        if write_error is not None or not overlap.is_new(obj):
            return  # stopping; or the old and the new socket of a rotation both delivered it
        data = raw.encode() if isinstance(raw, str) else raw
        if b"\n" in data:  # one message per line, whatever the server's whitespace
            data = orjson.dumps(obj)
        try:
            fh.write(data + b"\n")
        except OSError as exc:
            # a full disk, when a message is bigger than the write buffer (the whole market's
            # are): the feed would swallow the error and record nothing, for ever, unsaid
            write_error = exc
            for stop in stopping:
                stop.set()
            return
        count += 1

    async def flush(stop: asyncio.Event) -> None:
        """Put the recording on disk every second: a SIGKILL, a crash or a power cut loses at
        most the last second, not everything (gzip: a sync point, so all of it decompresses).
        The flush hands it to the kernel, which a SIGKILL cannot take back; the fsync, on a
        thread, carries it past a power cut."""
        nonlocal write_error
        flushed = 0
        while True:
            await asyncio.sleep(RECORD_FLUSH_EVERY)
            if count != flushed:
                flushed = count
                try:
                    fh.flush()
                    await asyncio.to_thread(_sync, fh)
                except OSError as exc:  # a full disk: stop, saying so
                    write_error = exc
                    stop.set()
                    return

    async def main(stop: asyncio.Event) -> None:
        stopping.append(stop)

        def refused(stream: str, reason: str) -> None:
            nonlocal all_refused
            reasons[stream] = reason
            if set(wanted) <= feed.refused():
                # nothing left to record: stop, rather than wait for the retry in silence
                all_refused = True
                stop.set()

        feed = Feed(settings, sink, on_refused=refused)
        feed.want_streams(wanted)
        async with feed:
            flusher = asyncio.create_task(flush(stop), name="record-flush")
            checker = asyncio.create_task(check_symbols(), name="record-symbols")
            try:
                await stop.wait()
            finally:
                await cancel_and_wait(checker)
                await cancel_and_wait(flusher)

    async def check_symbols() -> None:
        """Binance takes a stream of a symbol it does not list, then sends nothing on it: say
        so (with a did-you-mean), as run does for rules, or a typo records nothing unsaid."""
        symbols = [s.partition("@")[0].upper() for s in wanted if not s.startswith("!")]
        if not symbols:
            return
        directory = SymbolDirectory(settings)
        if not await directory.refresh():  # unreachable: it has said so
            return
        for problem in unknown_symbols(symbols, directory):
            name, _, hint = problem.partition(" ")
            logging.getLogger("alertbot").warning(
                "the exchange does not list %s%s: its stream stays silent",
                name,
                f" {hint}" if hint else "",
            )

    try:
        asyncio.run(
            _until_signalled(
                main, seconds, cut_short="the recording keeps what was put on disk, not its end"
            )
        )
    finally:
        try:
            fh.close()
        except OSError as exc:
            write_error = write_error or exc
    if write_error is not None:  # not "recorded N messages": they may not be in the file
        print(
            f"alertbot record: cannot write {shown}: {_why(write_error)} (stopped: what was "
            "not on disk by then is lost)",
            file=sys.stderr,
        )
        return 1
    repeats = (
        f" ({overlap.repeats} repeated by a second socket, skipped)" if overlap.repeats else ""
    )
    summary = f"recorded {plural(count, 'message')} to {shown}{repeats}"
    if log_format == "json":  # every line on stderr one JSON object, as with run
        log = logging.getLogger("alertbot")
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, summary, (), None))
    else:
        print(summary, file=sys.stderr)
    if all_refused:
        why = "; ".join(f"{s}: {reasons.get(s, 'refused')}" for s in sorted(set(wanted)))
        print(
            f"alertbot record: the exchange refused every stream asked for ({why})",
            file=sys.stderr,
        )
        return 1
    return 0


def _hint(command: str, extra: Sequence[str]) -> str:
    """How to write what a command did not take, for the slips a new user makes."""
    if command == "run" and not extra[0].startswith("-"):
        return " (rule files go after --rules: alertbot run --rules FILE ...)"
    if command == "check" and "--rules" in extra:
        return " (check takes the rule files themselves: alertbot check FILE ...)"
    return ""


def cmd_backup(out_path: str, config: str | None = None, force: bool = False) -> int:
    """``alertbot backup --out FILE``: the database, copied with SQLite's online backup API
    (a consistent snapshot, the bot's writes going on beside it), checked and then put in
    place whole (alertbot.backup.copy_database)."""
    import sqlite3

    from alertbot.backup import copy_database, summary
    from alertbot.settings import environment

    env = environment(os.environ, config)
    db = env.get("ALERTBOT_DB", "").strip() or "alertbot.db"
    if out_path == "-":
        print("alertbot backup: --out -: a database is a file; name one", file=sys.stderr)
        return 1
    if not os.path.isfile(db):  # connecting would create an empty one
        print(f"alertbot backup: {db}: no database there (ALERTBOT_DB)", file=sys.stderr)
        return 1
    if os.path.abspath(out_path) == os.path.abspath(db):
        print(f"alertbot backup: --out {out_path} is the database itself", file=sys.stderr)
        return 1
    try:
        counts = copy_database(db, out_path, force=force)
    except (OSError, sqlite3.Error) as exc:
        why = f"{exc.filename}: {_why(exc)}" if isinstance(exc, OSError) and exc.filename else exc
        print(f"alertbot backup: {why}", file=sys.stderr)
        return 1
    print(f"alertbot backup: {summary(db, out_path, counts)}", file=sys.stderr)
    return 0


def _recording_after_rules(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """``replay --rules a.yaml rec.jsonl``: ``--rules`` takes every name after it, the
    recording too. Take back a last name that is a recording's (``.jsonl``, ``.gz``); without
    one, say where the recording goes."""
    if args.recording is not None:
        return
    last = args.rules[-1]
    if len(args.rules) > 1 and last.lower().endswith((".jsonl", ".gz")):
        args.recording = last
        del args.rules[-1]
        return
    parser.error("no RECORDING; it comes first: alertbot replay RECORDING --rules FILE ...")


def main(argv: Sequence[str] | None = None) -> int:
    previous = _quiet_interrupts()  # until a command starts: it catches KeyboardInterrupt
    try:
        args = _arguments(argv)
    finally:
        _restore_interrupts(previous)
    if isinstance(args, int):
        return args
    return _command(args)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace | int:
    """The command line read and checked (argparse exits 2 with its usage); 2: no command."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if args.command is None:  # `alertbot` alone: what it can do, not only that a word is missing
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        parser.print_help(sys.stderr)
        return 2
    if extra:  # with the command's usage (argparse shows the bare command's) and the right form
        args.parser.error(f"unrecognized arguments: {' '.join(extra)}{_hint(args.command, extra)}")
    if args.command == "replay":
        _recording_after_rules(args, args.parser)
    if args.command in ("record", "backup") and not args.force:
        from alertbot.backup import filled_file

        size = filled_file(args.out)
        if size:
            args.parser.error(
                f"--out {args.out}: the file exists ({plural(size, 'byte')}); give --force to "
                "overwrite it"
            )
    return args


#: what each command needs, imported before it starts with Ctrl-C held back: a
#: KeyboardInterrupt raised inside an extension module's initialisation (orjson's, while
#: ``check`` imported it 0.1 s after Enter) crashed the process with SIGSEGV, or was
#: swallowed by importlib and the command ran on
_COMMAND_MODULES = {
    "check": ("alertbot.rules.loader", "alertbot.notify.routing"),
    "replay": (
        "orjson",
        "alertbot.rules.loader",
        "alertbot.rules.engine",
        "alertbot.notify.render",
        "alertbot.recording",
        "alertbot.feed.market",
    ),
    "run": ("asyncio", "alertbot.app", "alertbot.rules.loader", "alertbot.notify.routing"),
    "record": ("asyncio", "orjson", "alertbot.feed.client", "alertbot.feed.symbols"),
    "backup": ("sqlite3", "alertbot.settings"),
}


def _import_for(command: str) -> None:
    """Import what ``command`` needs, a Ctrl-C meanwhile acted on once that is done (as a
    KeyboardInterrupt: exit 130). SIGINT ignored (a job started in the background), or not
    in the main thread (no handler can be set there): imported as it is."""
    held: list[int] = []
    previous = None
    try:
        if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
            previous = signal.signal(signal.SIGINT, lambda signum, frame: held.append(signum))
    except ValueError:
        pass
    try:
        for name in _COMMAND_MODULES.get(command, ()):
            importlib.import_module(name)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    if held:
        raise KeyboardInterrupt


def _command(args: argparse.Namespace) -> int:
    try:
        _import_for(args.command)
        if args.command == "check":
            return cmd_check(args.files)
        if args.command == "replay":
            return cmd_replay(args.recording, args.rules, args.json, args.config)
        if args.command == "run":
            return cmd_run(args.rules, args.config)
        if args.command == "record":
            streams = args.streams or ["!miniTicker@arr"]
            return cmd_record(args.out, streams, args.duration, args.config, args.force)
        if args.command == "backup":
            return cmd_backup(args.out, args.config, args.force)
    except (RuleError, ConfigError) as exc:  # defensive: no traceback for bad input
        print(f"alertbot: {exc}", file=sys.stderr)
        return 1
    except _StdoutError as exc:
        print(f"alertbot {args.command}: cannot write to stdout: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `alertbot replay ... | head`
        sys.stderr.close()
        return 0
    raise AssertionError(args.command)


_restore_interrupts(_BEFORE)

if __name__ == "__main__":
    sys.exit(main())
