"""Rule files edited while the bot runs: a good edit swaps the rules, a broken one changes
nothing and tells the admins what is wrong; SIGHUP and the file watch both trigger it."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import resource
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from alertbot.app import App
from alertbot.chat.watches import ChatSettings
from alertbot.feed.settings import FeedSettings
from alertbot.notify.settings import DeliverySettings
from alertbot.rules.loader import load_files
from alertbot.store import Store, WatchRow
from tests.fakes.binance import FakeBinance, mini_ticker
from tests.fakes.telegram import FakeTelegram
from tests.test_cli_live import env_for, finish, sighup_ignored, start

TOKEN = "123456:TEST-token-0123456789abcdef"
ADMIN = 900
T = 1_772_000_000_000
GOOD = "rules:\n  - id: btc\n    symbols: [BTCUSDT]\n    when: price > 100\n"
EDITED = (
    "rules:\n  - id: eth\n    symbols: [ETHUSDT]\n    when: price < 3000\n"
    "  - id: sol\n    symbols: [SOLUSDT]\n    when: price > 200\n"
)
BROKEN = "rules:\n  - id: eth\n    symbols: [ETHUSDT]\n    when: price <<< 3000\n"


@asynccontextmanager
async def running(app: App) -> AsyncIterator[None]:
    """``app.run`` as a task for the block; stopped, and waited for, on the way out."""
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def make_app(
    tmp: Path, fake: FakeBinance, tg: FakeTelegram, rules: Path, **feed_changes: float
) -> App:
    feed = FeedSettings(
        ws_root=fake.ws_url, rest_root=fake.rest_url, ping_interval=None, backoff_initial=0.02
    )
    feed = dataclasses.replace(feed, **feed_changes)
    delivery = DeliverySettings(
        telegram_token=TOKEN,
        telegram_api_url=tg.api_url,
        admin_chats=(ADMIN,),
        db=str(tmp / "a.db"),
    )
    return App(
        load_files([rules]),
        feed,
        delivery,
        ChatSettings(admin_chats=(ADMIN,)),
        out=io.StringIO(),
        poll_timeout=0.5,
        rule_files=[str(rules)],
        rules_check=0.1,
    )


async def test_an_edit_is_picked_up_and_a_broken_one_keeps_the_running_rules(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with (
        FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]) as fake,
        FakeTelegram(token=TOKEN) as tg,
    ):
        app = make_app(tmp_path, fake, tg, rules)
        async with running(app):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=10)

            rules.write_text(EDITED)  # the file watch notices within rules_check
            await fake.wait_for(lambda: app.reloads == 1)
            assert sorted(r.id for r in app.engine.rules()) == ["eth", "sol"]
            await fake.wait_for_subscriptions({"ethusdt@miniTicker", "solusdt@miniTicker"})

            rules.write_text(BROKEN)
            await tg.wait_for(lambda: bool(tg.messages_to(ADMIN)))
            assert sorted(r.id for r in app.engine.rules()) == ["eth", "sol"]  # unchanged
            note = tg.messages_to(ADMIN)[0].text
            assert note.startswith("Rule files not reloaded: the running rules stay.")
            assert f"{rules}:4:" in note

            await fake.publish([mini_ticker("ETHUSDT", 2900, T)])  # the kept rules still fire
            await fake.wait_for(lambda: app.pipeline.alerts == 1)


async def test_a_file_caught_while_it_is_written_is_loaded_only_once_it_settles(tmp_path):
    """A writer that pauses half way (a script, a slow editor) must not have its first half
    loaded: the later rules would be removed and their firing state forgotten. The checks are
    called directly here, in the order the file watch would make them."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        app = make_app(tmp_path, fake, tg, rules)
        app.rules_check = 0  # no file watch job: this test makes the checks
        async with running(app):
            await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=10)  # started
            await app.check_rule_files()
            assert app.reloads == 0  # nothing changed

            rules.write_text(EDITED[: EDITED.index("  - id: sol")])  # the writer pauses here
            await app.check_rule_files()
            assert app.reloads == 0  # changed since the last look: it may still be written

            rules.write_text(EDITED)
            await app.check_rule_files()
            assert app.reloads == 0  # changed again
            await app.check_rule_files()
            assert app.reloads == 1  # the same for a whole check: loaded, in full
            assert sorted(r.id for r in app.engine.rules()) == ["eth", "sol"]
            await app.check_rule_files()
            assert app.reloads == 1


async def test_an_edit_whose_channel_secret_is_not_set_keeps_the_running_rules(tmp_path):
    """Its webhook would get unsigned requests (refused for good by a receiver that checks):
    refused as a broken edit is, with a note to the admins."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        app = make_app(tmp_path, fake, tg, rules)
        async with running(app):
            await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=10)
            rules.write_text(
                "channels:\n  desk: {webhook: 'https://example.com/h', secret_env: NOT_SET_X}\n"
                + GOOD
                + "    notify: [desk]\n"
            )
            assert await app.reload() is False
            await tg.wait_for(lambda: bool(tg.messages_to(ADMIN)))
            assert sorted(r.id for r in app.engine.rules()) == ["btc"]
            assert app.engine.rules()[0].notify == ()
    note = tg.messages_to(ADMIN)[0].text
    assert note == (
        "Rule files not reloaded: the running rules stay.\n"
        "channel 'desk': its secret_env NOT_SET_X is not set in the environment (nor "
        "NOT_SET_X_FILE)"
    )


async def test_an_edited_rule_keeps_its_firing_state_unless_its_condition_changed(tmp_path):
    """Editing a rule's message must not make a level that fired and still holds fire again
    (spam); editing its condition starts it afresh."""
    rule = "rules:\n  - id: btc\n    symbols: [BTCUSDT]\n    when: price > {}\n    message: {}\n"
    rules = tmp_path / "rules.yaml"
    rules.write_text(rule.format(100, "first"))
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        app = make_app(tmp_path, fake, tg, rules)
        async with running(app):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})

            async def tick(price: float, time: int) -> None:
                frames = app.pipeline.frames
                await fake.publish([mini_ticker("BTCUSDT", price, time)])
                await fake.wait_for(lambda: app.pipeline.frames > frames)

            await tick(150, T)
            assert app.pipeline.alerts == 1
            rules.write_text(rule.format(100, "second"))
            await fake.wait_for(lambda: app.reloads == 1)
            await tick(151, T + 1_000)
            assert app.pipeline.alerts == 1  # still true since it fired: quiet
            rules.write_text(rule.format(120, "third"))
            await fake.wait_for(lambda: app.reloads == 2)
            await tick(152, T + 2_000)
            assert app.pipeline.alerts == 2


async def test_an_edit_that_takes_a_watchs_id_is_refused_and_the_watch_keeps_it(tmp_path):
    """A rule may not be named like a chat watch (w1): the edit is refused at the id's place,
    and the watch, already in the database when the bot starts, keeps its id and its alerts."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    store = Store(tmp_path / "a.db")
    store.add_watch(WatchRow(0, ADMIN, "ETHUSDT", "price < 3000", 0, 0.0, False))
    store.close()
    async with (
        FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]) as fake,
        FakeTelegram(token=TOKEN) as tg,
    ):
        app = make_app(tmp_path, fake, tg, rules)
        async with running(app):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker", "ethusdt@miniTicker"})
            assert sorted(r.id for r in app.engine.rules()) == ["btc", "w1"]

            rules.write_text("rules:\n  - id: w1\n    symbols: [SOLUSDT]\n    when: price > 200\n")
            await tg.wait_for(lambda: bool(tg.messages_to(ADMIN)))
            note = tg.messages_to(ADMIN)[0].text
            assert f"{rules}:2:9: invalid id 'w1': ids like w12 are chat watches'" in note
            assert sorted(r.id for r in app.engine.rules()) == ["btc", "w1"]  # unchanged

            await fake.publish([mini_ticker("ETHUSDT", 2900, T)])
            await tg.wait_for(lambda: len(tg.messages_to(ADMIN)) == 2)
            assert "[w1]" in tg.messages_to(ADMIN)[1].plain_text


async def test_sighup_reloads_the_rule_files(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]) as fake:
        env = env_for(fake, tmp_path / "a.db", ALERTBOT_RULES_CHECK="1h")  # SIGHUP only
        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            rules.write_text(EDITED)
            await asyncio.sleep(0.2)
            assert "ethusdt@miniTicker" not in fake.subscribed()
            proc.send_signal(signal.SIGHUP)
            await fake.wait_for_subscriptions({"ethusdt@miniTicker", "solusdt@miniTicker"}, 20)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0
    assert "rules: SIGHUP: reloaded: 2 added, 0 changed, 1 removed, 0 unchanged" in err


async def test_a_reload_with_no_rule_files_says_so(tmp_path, caplog):
    """A SIGHUP to a bot started without --rules did nothing, without a word."""
    caplog.set_level("INFO", logger="alertbot")
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        rules = tmp_path / "rules.yaml"
        rules.write_text(GOOD)
        app = make_app(tmp_path, fake, tg, rules)
        app.rule_files = []  # as run without --rules
        assert await app.reload() is False
    assert "rules: SIGHUP: no rule files to reload (alertbot run --rules FILE)" in caplog.text


async def test_admins_hear_when_the_feed_is_down_and_when_it_is_back(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        app = make_app(tmp_path, fake, tg, rules, symbol_stale_after=0.3)
        app.feed_down_after = 0.6
        async with running(app):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=10)
            await fake.publish([mini_ticker("BTCUSDT", 50, T)])
            fake.silence(future=True)  # silent now and on every reconnect
            await tg.wait_for(lambda: bool(tg.messages_to(ADMIN)), timeout=10)
            assert tg.messages_to(ADMIN)[0].text.startswith("Feed down: no market data for")
            fake.silence(False)
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            for n in range(1, 40):  # until the reconnected socket delivers
                await fake.publish([mini_ticker("BTCUSDT", 50, T + n * 1000)])
                if len(tg.messages_to(ADMIN)) == 2:
                    break
                await asyncio.sleep(0.1)
            await tg.wait_for(lambda: len(tg.messages_to(ADMIN)) == 2, timeout=10)
            assert tg.messages_to(ADMIN)[1].text == "Feed recovered: market data is flowing again."


async def test_the_heartbeat_tells_the_admins_the_bot_is_alive(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, FakeTelegram(token=TOKEN) as tg:
        app = make_app(tmp_path, fake, tg, rules)
        app.heartbeat_every = 0.2
        async with running(app):
            await tg.wait_for(lambda: len(tg.messages_to(ADMIN)) >= 2, timeout=10)
    assert tg.messages_to(ADMIN)[0].text.startswith("alertbot is alive: feed ")


def address_space(pid: int) -> int:
    """The bytes of address space process ``pid`` maps now (Linux's VmSize)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmSize for {pid}")


@pytest.mark.skipif(not hasattr(resource, "prlimit"), reason="sets a limit with Linux's prlimit")
async def test_a_reload_that_fails_unexpectedly_keeps_the_running_rules(tmp_path):
    """The reload's catch-all, reached by a real input: the rule file becomes 64 GiB (sparse)
    while the process may map only 1 GiB more than it does (``ulimit -v``; set here with
    prlimit). Reading it raises MemoryError, which is no problem the loader reports. The
    running rules stay and still fire, the error is logged once, naming the file, the admins
    are told, and the next good edit loads."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(GOOD)
    async with (
        FakeBinance(symbols=["BTCUSDT", "ETHUSDT", "SOLUSDT"]) as fake,
        FakeTelegram(token=TOKEN) as tg,
    ):
        env = env_for(
            fake,
            tmp_path / "a.db",
            ALERTBOT_RULES_CHECK="100ms",
            ALERTBOT_TELEGRAM_TOKEN=TOKEN,
            ALERTBOT_TELEGRAM_API_URL=tg.api_url,
            ALERTBOT_ADMIN_CHATS=str(ADMIN),
        )
        proc = await start("run", "--rules", rules, env=env)
        try:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=20)
            await tg.wait_for(lambda: bool(tg.calls("getUpdates")), timeout=20)
            soft, hard = resource.prlimit(proc.pid, resource.RLIMIT_AS)
            resource.prlimit(proc.pid, resource.RLIMIT_AS, (address_space(proc.pid) + 2**30, hard))
            os.truncate(rules, 64 * 2**30)  # the file watch reloads it once it settles
            await tg.wait_for(lambda: bool(tg.messages_to(ADMIN)), timeout=20)
            note = tg.messages_to(ADMIN)[0].text
            assert note == (
                f"Rule files not reloaded: {rules} could not be read (an internal error: "
                "MemoryError()); the running rules stay."
            )

            await fake.publish([mini_ticker("BTCUSDT", 150, T)])  # the running rule fires
            await tg.wait_for(lambda: len(tg.messages_to(ADMIN)) == 2, timeout=20)
            assert "[btc]" in tg.messages_to(ADMIN)[1].plain_text

            resource.prlimit(proc.pid, resource.RLIMIT_AS, (soft, hard))
            rules.write_text(EDITED)
            await fake.wait_for_subscriptions({"ethusdt@miniTicker", "solusdt@miniTicker"}, 20)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    failed = [line for line in err.splitlines() if "could not be read" in line]
    assert len(failed) == 1, err
    assert failed[0].endswith(
        f"rules: rule file changed: {rules} could not be read (an internal error: "
        "MemoryError()); keeping the running rules"
    )
    assert "rules: rule file changed: reloaded: 2 added, 0 changed, 1 removed, 0 unchanged" in err


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
async def test_an_edit_made_while_the_rules_load_at_start_is_picked_up(tmp_path):
    """The files' stamps were taken after they were read: an edit made meanwhile looked like
    the state already loaded, and the old rules ran until the next edit."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        + "".join(
            f"  - id: r{i}\n    symbols: [BTCUSDT]\n    when: price > {i + 1}\n"
            for i in range(10_000)
        )
    )
    async with FakeBinance(symbols=["BTCUSDT", "ETHUSDT"]) as fake:
        env = env_for(fake, tmp_path / "a.db", ALERTBOT_RULES_CHECK="0.1")
        proc = await start("run", "--rules", rules, env=env)
        try:
            await asyncio.wait_for(sighup_ignored(proc.pid), 30)  # run is reading the rules
            rules.write_text("rules:\n  - id: eth\n    symbols: [ETHUSDT]\n    when: price > 1\n")
            await fake.wait_for_subscriptions({"ethusdt@miniTicker"}, 30)
        finally:
            proc.send_signal(signal.SIGTERM)
        code, _, err = await finish(proc)
    assert code == 0, err
    assert "rules: rule file changed: reloaded: 1 added, 0 changed, 10000 removed" in err


def saved_states(db: Path) -> list[tuple[str, str, int, int | None]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT rule, symbol, flags, last_fired FROM pair_states").fetchall()
    finally:
        conn.close()


ONCE = "rules:\n  - id: sol\n    symbols: [BTCUSDT]\n    when: price > {}\n    once: true\n"
OTHER = "rules:\n  - id: other\n    symbols: [BTCUSDT]\n    when: price > 1000000\n"


@pytest.mark.parametrize(
    "edit", [OTHER, ONCE.format(120)], ids=["removed-then-added-back", "edited-then-edited-back"]
)
async def test_a_rule_new_to_the_running_bot_starts_afresh_after_a_restart_too(tmp_path, edit):
    """A ``once`` rule fires; a reload removes it (or changes its condition) and a later one
    puts it back as it was: a new rule, which fires again while running. Its old saved state
    (done) stayed in the database and came back at the next start: the alert was lost. It is
    forgotten at the reload, so a crash right after it cannot bring it back either."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(ONCE.format(100))
    feed = FeedSettings(ws_root="", rest_root="", ping_interval=None, backoff_initial=0.02)

    def bot(fake: FakeBinance) -> App:
        return App(
            load_files([rules]),
            dataclasses.replace(feed, ws_root=fake.ws_url, rest_root=fake.rest_url),
            DeliverySettings(db=str(tmp_path / "a.db")),
            ChatSettings(),
            out=io.StringIO(),
            grace=0.5,
            rule_files=[str(rules)],
            rules_check=0,
            state_every=3600,  # saved only when the test, a reload or the shutdown says
        )

    async def tick(app: App, fake: FakeBinance, price: float, time: int) -> None:
        frames = app.pipeline.frames
        await fake.publish([mini_ticker("BTCUSDT", price, time)])
        await fake.wait_for(lambda: app.pipeline.frames > frames)

    async with FakeBinance(symbols=["BTCUSDT"]) as fake:
        first = bot(fake)
        async with running(first):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await tick(first, fake, 150, T)
            await first.save_state()  # "sol" is done, on disk
            rules.write_text(edit)
            assert await first.reload()
            await tick(first, fake, 90, T + 1_000)
            rules.write_text(ONCE.format(100))
            assert await first.reload()
            # forgotten at the reload, not at the next save: a crash now would not bring it back
            assert saved_states(tmp_path / "a.db") == []
            await tick(first, fake, 95, T + 2_000)  # the new "sol" is armed, not true yet
        assert first.pipeline.alerts_by_rule == {"sol": 1}

        second = bot(fake)
        async with running(second):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            await tick(second, fake, 150, T + 60_000)
            await fake.wait_for(lambda: second.pipeline.alerts >= 1)
    assert second.pipeline.alerts_by_rule == {"sol": 1}
