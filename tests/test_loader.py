"""Rule files: what a good file becomes, and the exact FILE:LINE:COL message of each mistake."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alertbot.errors import RuleError
from alertbot.notify.webhook import url_problem
from alertbot.rules.conditions import AllOf, AnyOf, Breaks, Cross, Level, Move
from alertbot.rules.loader import (
    LIBYAML,
    PURE_YAML,
    Problem,
    RuleFileError,
    YamlLoader,
    load_file,
    load_files,
    load_text,
)
from alertbot.rules.loader import _tab_between_tokens as tab_between_tokens
from alertbot.rules.model import Channel, Rule

DATA = Path(__file__).parent / "data"
GOOD = DATA / "good"
BAD = DATA / "bad"

MINUTE = 60_000
HOUR = 60 * MINUTE


def problems_of(*names: str, yaml_loader: YamlLoader | None = None) -> list[str]:
    """The problems loading ``names`` (relative to tests/data/bad) reports, as text lines."""
    with pytest.raises(RuleFileError) as info:
        load_files(names, yaml_loader=yaml_loader)
    return [str(p) for p in info.value.problems]


@pytest.fixture(params=["libyaml", "pure"])
def yaml_loader(request: pytest.FixtureRequest) -> YamlLoader:
    """Each YAML parser a rule file can be read with: libyaml's (C; the default when PyYAML
    has it) and PyYAML's own (Python). A test that takes it holds for both."""
    if request.param == "libyaml":
        if LIBYAML is None:
            pytest.skip("PyYAML was built without libyaml")
        return LIBYAML
    return PURE_YAML


@pytest.fixture
def in_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run in tests/data/bad, so that messages name files as the table below does."""
    monkeypatch.chdir(BAD)


# ---------------------------------------------------------------- good files


def test_file_with_every_feature_loads_into_the_expected_rules() -> None:
    ruleset = load_file(GOOD / "all-features.yaml")

    assert ruleset.channels == {
        "ops": Channel("ops", telegram=-1001234567890),
        "desk": Channel("desk", webhook="https://example.com/hook", secret_env="DESK_SECRET"),
        "plain-hook": Channel("plain-hook", webhook="http://localhost:8080/alerts"),
    }
    default_message = "{rule}: {symbol} at {price}"
    assert ruleset.rules == (
        Rule(
            id="btc-70k",
            condition=Cross("price", "above", 70_000.0),
            symbols=("BTCUSDT",),
            cooldown_ms=30 * MINUTE,
            rearm=0.005,
            message="{symbol} broke {threshold}: {price} ({change_24h}% in 24h, {{literal}})",
            notify=("desk",),
        ),
        Rule(
            id="alt_breakouts.v2",
            condition=Breaks("high"),
            symbols=("*USDT",),
            exclude=("BTCUSDT", "ETH?USDT"),
            cooldown_ms=0,
            rearm=0.0,  # the default band does not apply: there is no threshold
            message=default_message,
            notify=("ops", "desk", "plain-hook"),
        ),
        Rule(
            id="sol-pump",
            condition=AllOf(
                (
                    Level("price", ">", 200.0),
                    Move("rises", 5.0, 15 * MINUTE),
                    AnyOf((Level("volume", ">", 1e6), Level("quote_volume", ">=", 2e9))),
                )
            ),
            symbols=("SOLUSDT", "1000PEPEUSDT"),
            cooldown_ms=0,
            rearm=0.0,
            once=True,
            expires_ms=1_798_675_200_000,  # 2026-12-31T00:00:00Z
            message=default_message,
            notify=("ops",),
        ),
        Rule(
            id="eth-either-way",
            condition=AnyOf((Level("price", "<", 2000.0), Level("price", ">", 5000.0))),
            symbols=("ETHUSDT",),
            cooldown_ms=15 * MINUTE,
            rearm=0.0,
            expires_ms=1_799_971_200_000,  # 2027-01-15, midnight UTC
            message=default_message,
            notify=("ops",),
        ),
        Rule(
            id="doge-move",
            condition=Move("moves", 3.0, HOUR),
            symbols=("DOGEUSDT",),
            cooldown_ms=4 * HOUR,
            rearm=0.01,
            expires_ms=1_782_820_800_000,  # 2026-06-30T12:00:00, naive: UTC
            message=default_message,
            notify=(),
        ),
        Rule(
            id="xrp-change",
            condition=Level("change_24h", "<=", -10.0),
            symbols=("XRPUSDT",),
            cooldown_ms=24 * HOUR,
            rearm=0.025,
            expires_ms=1_782_856_800_000,  # 2026-07-01T00:00:00+02:00
            message=default_message,
            notify=("ops",),
        ),
    )
    name = str(GOOD / "all-features.yaml")
    assert [r.origin for r in ruleset.rules] == [
        f"{name}:{line}:5" for line in (16, 24, 31, 41, 47, 54)
    ]


@pytest.mark.parametrize(
    "names",
    [["all-features.yaml"], ["design-example.yaml"], ["split-channels.yaml", "split-rules.yaml"]],
    ids=lambda names: names[0],
)
def test_libyaml_and_pyyaml_read_good_files_into_the_same_rules(names: list[str]) -> None:
    """libyaml's parser (the default when PyYAML has it) gives the rules, channels and origins
    that PyYAML's own parser gives."""
    if LIBYAML is None:
        pytest.skip("PyYAML was built without libyaml")
    paths = [GOOD / name for name in names]
    fast = load_files(paths, yaml_loader=LIBYAML)
    pure = load_files(paths, yaml_loader=PURE_YAML)

    assert fast == pure
    assert [r.origin for r in fast.rules] == [r.origin for r in pure.rules]


def test_example_of_the_design_document_loads() -> None:
    ruleset = load_file(GOOD / "design-example.yaml")

    assert [r.id for r in ruleset.rules] == ["btc-70k", "alt-breakouts", "sol-pump"]
    btc, alts, sol = ruleset.rules
    assert (btc.cooldown_ms, btc.rearm, btc.notify) == (30 * MINUTE, 0.005, ("ops",))
    assert (alts.symbols, alts.exclude, alts.cooldown_ms) == (
        ("*USDT",),
        ("BTCUSDT", "ETHUSDT"),
        HOUR,
    )
    assert sol.condition == AllOf((Level("price", ">", 200.0), Move("rises", 5.0, 15 * MINUTE)))
    assert (sol.once, sol.expires_ms, sol.cooldown_ms) == (True, 1_798_675_200_000, 15 * MINUTE)
    assert set(ruleset.channels) == {"ops", "desk"}


def test_m_after_a_sign_is_a_million_and_a_minute_only_as_a_duration() -> None:
    """`price > 1m` is a price of 1000000 (the README's numbers: k, m, b move the decimal
    point), never a minute, as in a /watch; `in 1m` is a minute."""
    rules = load_text(
        "rules:\n"
        "  - {id: a, symbols: [BTCUSDT], when: price > 1m}\n"
        "  - {id: b, symbols: [BTCUSDT], when: rises 5% in 1m, cooldown: 1m}\n",
        "r.yaml",
    ).rules
    assert [(r.condition, r.cooldown_ms) for r in rules] == [
        (Level("price", ">", 1_000_000.0), 0),
        (Move("rises", 5.0, MINUTE), MINUTE),
    ]


def test_rules_may_notify_channels_defined_in_another_file() -> None:
    ruleset = load_files([GOOD / "split-channels.yaml", GOOD / "split-rules.yaml"])

    assert [(r.id, r.notify) for r in ruleset.rules] == [
        ("btc-70k", ("ops", "desk")),  # listed twice, kept once
        ("eth-3k", ("desk",)),  # from the file's defaults
    ]
    assert set(ruleset.channels) == {"ops", "desk"}


def test_a_webhook_channel_may_take_its_url_from_the_environment() -> None:
    """A Slack- or Discord-style URL is its own credential, and secrets never live in rule
    files: ``webhook_env`` names the variable that holds it, alone or with ``secret_env``;
    the loader keeps the name (it reads no environment) and notify may name the channel."""
    ruleset = load_text(
        "channels:\n"
        "  slack: {webhook_env: SLACK_WEBHOOK_URL}\n"
        "  signed: {webhook_env: HOOK_URL, secret_env: HOOK_SECRET}\n"
        "rules:\n"
        "  - {id: up, symbols: [BTCUSDT], when: price > 1, notify: [slack, signed]}\n",
        "r.yaml",
    )
    assert ruleset.channels == {
        "slack": Channel("slack", webhook_env="SLACK_WEBHOOK_URL"),
        "signed": Channel("signed", webhook_env="HOOK_URL", secret_env="HOOK_SECRET"),
    }
    assert ruleset.rules[0].notify == ("slack", "signed")


def test_a_webhook_channel_may_name_the_body_its_receiver_takes() -> None:
    """``format: slack`` (or discord, json; any case) for a receiver the URL's host does not
    tell, a Slack-compatible one elsewhere; without it, None: told by the host."""
    ruleset = load_text(
        "channels:\n"
        "  mm: {webhook: 'https://mattermost.example/hooks/abc', format: Slack}\n"
        "  dc: {webhook_env: DC_URL, format: discord}\n"
        "  plain: {webhook: 'https://h.example/x'}\n"
        "rules: []\n",
        "r.yaml",
    )
    assert {n: c.format for n, c in ruleset.channels.items()} == {
        "mm": "slack",
        "dc": "discord",
        "plain": None,
    }


def test_a_telegram_channel_may_name_a_forum_topic_of_its_chat() -> None:
    """``topic: N`` goes with ``telegram`` (a supergroup's forum topic); without it, None:
    the chat itself. Two channels of one chat in the same topic may both be notified (the
    alert goes there once)."""
    ruleset = load_text(
        "channels:\n"
        "  btc: {telegram: -1001234567890, topic: 42}\n"
        "  same: {telegram: -1001234567890, topic: '42'}\n"
        "  room: {telegram: -1001234567890}\n"
        "rules:\n"
        "  - {id: up, symbols: [BTCUSDT], when: price > 1, notify: [btc, same]}\n",
        "r.yaml",
    )
    assert ruleset.channels == {
        "btc": Channel("btc", telegram=-1001234567890, topic=42),
        "same": Channel("same", telegram=-1001234567890, topic=42),
        "room": Channel("room", telegram=-1001234567890),
    }
    assert ruleset.rules[0].notify == ("btc", "same")


def test_load_text_and_load_file_give_the_same_rules() -> None:
    path = GOOD / "all-features.yaml"
    from_text = load_text(path.read_text(encoding="utf-8"), "rules.yaml")

    assert from_text == load_file(path)
    assert from_text.rules[0].origin == "rules.yaml:16:5"


def test_a_symbol_named_in_chinese_is_a_symbol_in_any_case_of_its_ascii_letters() -> None:
    """Binance lists contracts named in Chinese (币安人生USDT, 牛来USDT): rules name them, and
    globs over them, with their ASCII letters in any case."""
    text = (
        "rules:\n  - id: cn\n    symbols: [币安人生usdt, 牛来USDT, '*人生*']\n"
        "    exclude: [龙虾usdt]\n    when: price > 1\n"
    )
    (cn,) = load_text(text, "r.yaml").rules
    assert cn.symbols == ("币安人生USDT", "牛来USDT", "*人生*")
    assert cn.exclude == ("龙虾USDT",)


@pytest.mark.parametrize("symbol", ["ÉTHUSDT", "ВТСUSDT", "人生🚀"])
def test_a_symbol_with_a_cased_letter_beyond_ascii_or_a_symbol_sign_is_refused(
    symbol: str,
) -> None:
    """A letter beyond ASCII with a case (or a look-alike of B, T, C): Binance lists none, and
    how a stream would name it is unknown; an emoji is no letter. Refused at its place."""
    text = f"rules:\n  - id: x\n    symbols: [{symbol}]\n    when: price > 1\n"
    with pytest.raises(RuleError) as info:
        load_text(text, "r.yaml")
    assert str(info.value).startswith(f"r.yaml:3:15: invalid symbol '{symbol}' in 'symbols'")


# ---------------------------------------------------------------- one bad file per mistake

BAD_FILES: dict[str, list[str]] = {
    "unknown-key.yaml": [
        "unknown-key.yaml:5:5: unknown key 'cooldwn' (did you mean 'cooldown'?)",
    ],
    "bad-condition.yaml": [
        # a plain scalar, a quoted one, an item of an 'all' list: columns point into the file
        "bad-condition.yaml:4:19: expected a number after '>', got 'abc' at column 9",
        "bad-condition.yaml:7:26: expected a number after 'crosses', got 'sideways' at column 15",
        "bad-condition.yaml:10:32: expected 'in' after '5', got 'percent' at column 9",
    ],
    "duplicate-id.yaml": [
        "duplicate-id.yaml:5:9: duplicate id 'btc-70k' (first defined at duplicate-id.yaml:2:9)",
    ],
    "unknown-placeholder.yaml": [
        "unknown-placeholder.yaml:5:14: unknown placeholder '{prise}' in message "
        "(did you mean '{price}'?; known: {change_24h}, {condition}, {high}, {low}, {move}, "
        "{open}, {price}, {quote_volume}, {range_24h}, {rule}, {sparkline}, {symbol}, "
        "{threshold}, {time}, {value}, {volume})",
    ],
    "format-spec.yaml": [
        "format-spec.yaml:5:14: placeholder '{price:.2f}' in message: format specs and "
        "conversions are not supported, write '{price}'",
        "format-spec.yaml:9:14: placeholder '{price!r}' in message: format specs and "
        "conversions are not supported, write '{price}'",
        "format-spec.yaml:13:14: unbalanced braces in message (expected '}' before end of "
        "string); write '{{' or '}}' for a literal brace",
    ],
    # Telegram refuses an empty message: every alert of such a rule would be lost
    "blank-message.yaml": [
        f"blank-message.yaml:{line}:14: blank message: every alert would be empty; write some "
        "text, or leave 'message' out for the default"
        for line in (5, 9, 13)
    ],
    "bad-duration.yaml": [
        "bad-duration.yaml:5:15: invalid 'cooldown': expected a duration like 30s, 15m, 4h or "
        "1d, got '15 minutes'",
    ],
    "bad-rearm.yaml": [
        "bad-rearm.yaml:5:12: 'rearm' must be a percentage: write '0.5%' instead of '0.5'",
        "bad-rearm.yaml:9:12: 'rearm' must be at least 0% and less than 100%, got '150%'",
    ],
    "rearm-on-breaks.yaml": [
        "rearm-on-breaks.yaml:5:5: rearm needs a single threshold condition; "
        "'breaks 24h ...' has no threshold to move away from",
        "rearm-on-breaks.yaml:9:5: rearm needs a single threshold condition; "
        "an 'all'/'any' rule has several",
    ],
    "unknown-channel.yaml": [
        "unknown-channel.yaml:7:14: unknown channel 'opps' in notify (did you mean 'ops'?)",
    ],
    "secret-in-channel.yaml": [
        "secret-in-channel.yaml:2:45: secrets never live in rule files: remove 'secret' and "
        "name an environment variable that holds it instead, e.g. secret_env: DESK_SECRET",
    ],
    "channel-telegram-and-webhook.yaml": [
        "channel-telegram-and-webhook.yaml:4:5: channel 'ops' has both 'telegram' and "
        "'webhook': a channel is one destination, define one channel for each",
    ],
    "missing-id.yaml": [
        "missing-id.yaml:2:5: rule is missing 'id'",
    ],
    "missing-symbols.yaml": [
        "missing-symbols.yaml:2:5: rule 'btc-70k' is missing 'symbols'",
    ],
    "when-and-all.yaml": [
        "when-and-all.yaml:5:5: 'all' cannot be combined with 'when': a rule has exactly one "
        "of 'when', 'all' or 'any'",
    ],
    "no-condition.yaml": [
        "no-condition.yaml:2:5: rule 'btc-70k' needs a condition: one of 'when', 'all' or 'any'",
    ],
    "bad-symbol.yaml": [
        "bad-symbol.yaml:3:15: invalid symbol 'BTC-USDT' in 'symbols': use letters, digits, "
        "'_' and the wildcards * and ?",
    ],
    "bad-expires.yaml": [
        "bad-expires.yaml:5:14: 'expires' must be an ISO-8601 time like 2026-12-31T00:00:00Z, "
        "got 'next friday'",
    ],
    "yaml-syntax.yaml": [
        "yaml-syntax.yaml:4:9: YAML syntax error: the list opened with '[' at 3:14 is not "
        "closed: expected ',' or ']' here",
    ],
    "empty.yaml": [
        "empty.yaml:1:1: empty rule file: expected a mapping with 'rules:'",
    ],
    "not-a-mapping.yaml": [
        "not-a-mapping.yaml:1:1: a rule file must be a mapping with 'rules:', got a list",
    ],
    "once-not-bool.yaml": [
        "once-not-bool.yaml:5:11: 'once' must be true or false without quotes, got the text 'true'",
    ],
    "duplicate-key.yaml": [
        "duplicate-key.yaml:5:5: duplicate key 'when' (first defined at duplicate-key.yaml:4:5)",
    ],
    "alias.yaml": [
        "alias.yaml:6:5: aliases ('*base') are not supported in rule files; "
        "put shared settings under 'defaults:'",
    ],
    "three-mistakes.yaml": [
        "three-mistakes.yaml:2:3: unknown key 'cooldwn' (did you mean 'cooldown'?)",
        "three-mistakes.yaml:6:18: expected a number after '>', got '>' at column 8",
        "three-mistakes.yaml:10:15: invalid 'cooldown': expected a duration like 30s, 15m, 4h "
        "or 1d, got '15x'",
    ],
}

#: bad files that are only wrong together with another file
CROSS_FILE = {
    "duplicate-id-across-files-a.yaml",
    "duplicate-id-across-files-b.yaml",
    "duplicate-channel-across-files.yaml",
}


@pytest.mark.usefixtures("in_bad")
@pytest.mark.parametrize(("name", "expected"), BAD_FILES.items(), ids=list(BAD_FILES))
def test_bad_file_is_rejected_with_each_problem_at_its_place(
    name: str, expected: list[str], yaml_loader: YamlLoader
) -> None:
    """Each mistake's message and FILE:LINE:COL, the same whichever parser reads the file
    (libyaml words YAML errors its own way; PyYAML's words are the ones reported)."""
    assert problems_of(name, yaml_loader=yaml_loader) == expected


@pytest.mark.usefixtures("in_bad")
def test_file_with_three_mistakes_reports_all_three() -> None:
    problems = problems_of("three-mistakes.yaml")

    assert [p.split(": ", 1)[0] for p in problems] == [
        "three-mistakes.yaml:2:3",
        "three-mistakes.yaml:6:18",
        "three-mistakes.yaml:10:15",
    ]


@pytest.mark.usefixtures("in_bad")
def test_duplicate_id_across_two_files_is_reported_at_the_second() -> None:
    assert problems_of("duplicate-id-across-files-a.yaml", "duplicate-id-across-files-b.yaml") == [
        "duplicate-id-across-files-b.yaml:6:9: duplicate id 'btc-70k' "
        "(first defined at duplicate-id-across-files-a.yaml:4:9)",
    ]


@pytest.mark.usefixtures("in_bad")
def test_duplicate_channel_across_two_files_is_reported_at_the_second() -> None:
    assert problems_of(
        "duplicate-id-across-files-a.yaml", "duplicate-channel-across-files.yaml"
    ) == [
        "duplicate-channel-across-files.yaml:2:3: duplicate channel 'ops' "
        "(first defined at duplicate-id-across-files-a.yaml:2:3)",
    ]


@pytest.mark.usefixtures("in_bad")
def test_problems_of_several_files_are_reported_together_in_file_order() -> None:
    assert problems_of("missing-id.yaml", "unknown-key.yaml", "empty.yaml") == (
        BAD_FILES["missing-id.yaml"] + BAD_FILES["unknown-key.yaml"] + BAD_FILES["empty.yaml"]
    )


def test_every_bad_file_has_its_expected_problems_in_the_table() -> None:
    assert {p.name for p in BAD.glob("*.yaml")} == set(BAD_FILES) | CROSS_FILE


# ---------------------------------------------------------------- the error itself


def test_error_is_a_rule_error_whose_text_lists_every_problem_one_per_line() -> None:
    text = "rules:\n  - id: a b\n    symbols: [X]\n    when: price > 1\n    once: maybe\n"
    with pytest.raises(RuleError) as info:
        load_text(text, "r.yaml")

    assert isinstance(info.value, RuleFileError)
    assert info.value.problems == [
        Problem("r.yaml", 2, 9, "invalid id 'a b': use letters, digits, '_', '.' and '-'"),
        Problem("r.yaml", 5, 11, "'once' must be true or false, got 'maybe'"),
    ]
    assert str(info.value) == "\n".join(str(p) for p in info.value.problems)


def test_unreadable_file_is_a_problem_at_line_1_column_1(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(RuleFileError) as info:
        load_file(missing)

    assert [str(p) for p in info.value.problems] == [
        f"{missing}:1:1: cannot read rule file: No such file or directory"
    ]


def test_a_named_pipe_is_refused_not_waited_on(tmp_path: Path) -> None:
    """Reading a FIFO waits for a writer: check would hang, and a reload would hold the reload
    lock (and a thread) for good."""
    fifo = tmp_path / "rules.yaml"
    os.mkfifo(fifo)
    with pytest.raises(RuleFileError) as info:
        load_files([fifo])
    assert [str(p) for p in info.value.problems] == [
        f"{fifo}:1:1: cannot read rule file: a pipe, not a file"
    ]


@pytest.mark.parametrize(
    ("written", "ms"),
    [
        ("2026-12-31T00:00:01Z", 1_798_675_201_000),
        ("2026-12-31T00:00:01.000500Z", 1_798_675_201_001),  # a tick at ...01.000 still fires
        ("2026-12-31T00:00:00.999999+00:00", 1_798_675_201_000),
    ],
)
def test_expires_finer_than_a_millisecond_is_rounded_up(written: str, ms: int) -> None:
    """'a tick at or after it never fires': one before it, in the same millisecond, may."""
    text = (
        f"rules:\n  - id: a\n    symbols: [BTCUSDT]\n    when: price > 1\n    expires: {written}\n"
    )
    (rule,) = load_text(text, "r.yaml").rules
    assert rule.expires_ms == ms


@pytest.mark.parametrize(
    ("text", "slow"),
    [
        ("a: 1\n", False),
        ("# rules\t(a tab in a comment)\na: 1\n", False),
        ("a: 1  # note:\there\n", False),
        ("a:\t1\n", True),  # between tokens: where PyYAML and libyaml differ
        ("\ta: 1\n", True),
        ("a: x#y\tz\n", True),  # no comment: '#' inside a word
        ("a: 'x # y\tz'\n", True),  # a quote before the '#': maybe no comment, so careful
    ],
)
def test_only_a_tab_outside_comments_takes_the_slow_parser(text: str, slow: bool) -> None:
    """PyYAML has the say where it and libyaml differ (a tab between tokens), at about a fifth
    of the speed: one tab in a comment of a 20k-rule file made 'check' take 12 s, not 2.3 s."""
    assert tab_between_tokens(text) == slow


def test_a_file_named_twice_is_read_once(tmp_path: Path) -> None:
    """Named twice (or once more through a link), its rules were each other's duplicates:
    'duplicate id (first defined at)' the very same place."""
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - id: a\n    symbols: [BTCUSDT]\n    when: price > 1\n")
    link = tmp_path / "link.yaml"
    link.symlink_to(path)
    hard = tmp_path / "hard.yaml"
    hard.hardlink_to(path)  # the same file under a second name
    assert [r.id for r in load_files([path, path, link, hard]).rules] == ["a"]


def test_file_that_is_not_utf8_is_a_problem_at_the_bad_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"rules:\n  - id: caf\xe9\n")
    with pytest.raises(RuleFileError) as info:
        load_file(path)

    assert [str(p) for p in info.value.problems] == [f"{path}:2:12: not UTF-8 text"]


# ---------------------------------------------------------------- smaller cases, inline

RULE = "rules:\n  - id: r\n    symbols: [BTCUSDT]\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            RULE + "    symbols: [*USDT]\n",
            "r.yaml:4:15: YAML syntax error: found undefined alias 'USDT' (a name that starts "
            "with '*' must be quoted, e.g. \"*USDT\")",
            id="unquoted-glob",
        ),
        pytest.param(
            "rules: []\n---\nrules: []\n",
            "r.yaml:2:1: a rule file holds a single YAML document; found a second one",
            id="two-documents",
        ),
        pytest.param(
            "rules:\n",
            "r.yaml:1:7: 'rules' must be a list of rules, got nothing",
            id="rules-empty-value",
        ),
        pytest.param(
            "channels: {}\n",
            "r.yaml:1:1: missing 'rules:': a rule file lists its rules under 'rules:'",
            id="no-rules-key",
        ),
        pytest.param(
            RULE + "    when: [price > 1]\n",
            "r.yaml:4:11: 'when' takes one condition; use 'all:' or 'any:' for a list",
            id="when-with-a-list",
        ),
        pytest.param(
            RULE + "    all:\n      - {all: [price > 1], any: [price < 1]}\n",
            "r.yaml:5:28: a nested condition is either {all: [...]} or {any: [...]}, not both",
            id="nested-all-and-any",
        ),
        pytest.param(
            RULE + "    any: [price > 1, {all: [breaks 24h hi]}]\n",
            "r.yaml:4:40: expected 'high' or 'low' after '24h', got 'hi' at column 12",
            id="nested-condition-column",
        ),
        # a condition over several lines: the word itself, wherever YAML folded it from
        pytest.param(
            RULE + "    when: >-\n      rises 5%\n      in 15q\n",
            "r.yaml:6:10: expected a duration like 30s, 15m, 4h or 1d, got '15q' at column 13",
            id="folded-block-condition-column",
        ),
        pytest.param(
            RULE + "    when: |\n      rises 5%   in\n        15q\n",
            "r.yaml:6:9: expected a duration like 30s, 15m, 4h or 1d, got '15q' at column 17",
            id="literal-block-condition-column",
        ),
        pytest.param(
            RULE + "    when: rises 5%\n      in 15q\n",
            "r.yaml:5:10: expected a duration like 30s, 15m, 4h or 1d, got '15q' at column 13",
            id="plain-multi-line-condition-column",
        ),
        pytest.param(
            RULE + '    when: "rises 5%\n\n       in 15q"\n',
            "r.yaml:6:11: expected a duration like 30s, 15m, 4h or 1d, got '15q' at column 13",
            id="quoted-multi-line-condition-column",
        ),
        pytest.param(
            RULE + "    when: >- # note\n      price >\n",
            "r.yaml:5:14: expected a number after '>' at the end",
            id="folded-block-condition-at-its-end",
        ),
        pytest.param(
            RULE + '    when: "rises\\x205% in 15q"\n',
            "r.yaml:4:11: expected a duration like 30s, 15m, 4h or 1d, got '15q' at column 13",
            id="escape-before-the-word-gives-the-scalar-start",
        ),
        # a condition written as in chat: YAML reads a leading '>' as a folded block
        pytest.param(
            RULE + "    when: > 70000\n",
            "r.yaml:4:11: YAML syntax error: YAML reads a value that starts with '>' as a folded "
            'block; quote it: "> 70000"',
            id="unquoted-condition-starting-with-greater-than",
        ),
        pytest.param(
            RULE + "    when: >=70000 # note\n",
            "r.yaml:4:11: YAML syntax error: YAML reads a value that starts with '>' as a folded "
            'block; quote it: ">=70000"',
            id="unquoted-condition-starting-with-greater-or-equal",
        ),
        pytest.param(
            RULE + "    any: [price < 1, > 5]\n",
            "r.yaml:4:22: YAML syntax error: a value that starts with '>' must be quoted: \"> 5\"",
            id="unquoted-condition-starting-with-greater-than-in-a-list",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    message: {symbol} at {price}\n",
            "r.yaml:5:23: YAML syntax error: expected <block end>, but found '<scalar>' "
            "(while parsing a block mapping at 2:5); quote a message that starts with '{'",
            id="unquoted-message-starting-with-brace",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    message: {symbol: 1}\n",
            "r.yaml:5:14: 'message' must be text, got a mapping "
            "(quote a message that starts with '{')",
            id="message-is-a-mapping",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    cooldown: 15\n",
            "r.yaml:5:15: invalid 'cooldown': expected a duration like 30s, 15m, 4h or 1d, "
            "got '15'",
            id="cooldown-without-unit",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    cooldown: 15\u017f\n",
            "r.yaml:5:15: invalid 'cooldown': expected a duration like 30s, 15m, 4h or 1d, "
            "got '15\u017f'",
            id="cooldown-unit-not-ascii",
        ),
        pytest.param(
            RULE + "    when: rises 5% in 15\u017f\n",
            "r.yaml:4:23: expected a duration like 30s, 15m, 4h or 1d, got '15\u017f' at column 13",
            id="move-window-unit-not-ascii",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    cooldown: " + "1" * 5000 + "s\n",
            "r.yaml:5:15: invalid 'cooldown': duration '" + "1" * 31 + "…' is longer than 366 days",
            id="cooldown-of-thousands-of-digits",
        ),
        pytest.param(
            RULE + "    when: " + "all(" * 400 + "price > 1" + ")" * 400 + "\n",
            "r.yaml:4:75: all/any nest more than 16 levels deep at column 65",
            id="condition-nested-400-deep",
        ),
        pytest.param(
            RULE + "    all: " + "[{all: " * 16 + "[price > 1]" + "}]" * 16 + "\n",
            "r.yaml:4:117: all/any nest more than 16 levels deep",
            id="yaml-lists-nested-17-deep",
        ),
        pytest.param(
            RULE + "    all: " + "[{any: " * 15 + "[all(price > 1)]" + "}]" * 15 + "\n",
            "r.yaml:4:116: all/any nest more than 16 levels deep at column 1",
            id="yaml-lists-and-a-condition-nested-17-deep-together",
        ),
        pytest.param(
            RULE + "    when: volume > 0\n",
            "r.yaml:4:20: volume must be greater than 0 at column 10",
            id="volume-greater-than-0",
        ),
        pytest.param(
            RULE + "    any: [price > 1, drops 150% in 1h]\n",
            "r.yaml:4:28: a price cannot drop by 100% or more at column 7",
            id="drops-150-percent",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    rearm: 99.99999999999999999%\n",
            "r.yaml:5:12: 'rearm' must be at least 0% and less than 100%, "
            "got '99.99999999999999999%'",
            id="rearm-that-rounds-to-100-percent",  # a band of 1.0: re-arms only at 0
        ),
        pytest.param(
            RULE + "    when: price > 1\n    rearm: -1%\n",
            "r.yaml:5:12: 'rearm' must be a percentage like 0.5%, got '-1%'",
            id="rearm-negative",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    notify: ops\n",
            "r.yaml:5:13: unknown channel 'ops' in notify "
            "(no channels are defined under 'channels:')",
            id="notify-without-channels",
        ),
        pytest.param(
            "channels:\n  d: {webhook: ftp://example.com}\nrules: []\n",
            "r.yaml:2:16: 'webhook' must be an http(s) URL, got 'ftp://example.com'",
            id="webhook-not-http",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'http://example.com:70000/hook'}\nrules: []\n",
            "r.yaml:2:16: the webhook URL's port must be in 1-65535, "
            "got 'http://example.com:70000/hook'",
            id="webhook-port-out-of-range",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'http://[::1/hook'}\nrules: []\n",
            "r.yaml:2:16: 'webhook' must be an http(s) URL, got 'http://[::1/hook'",
            id="webhook-ipv6-bracket-open",
        ),
        pytest.param(
            'channels:\n  d: {webhook: "https://example.com/h\\r\\nX-Injected: 1"}\nrules: []\n',
            "r.yaml:2:16: the webhook URL cannot be posted to: '\\r' at position 21 "
            "(a URL holds no white space or control characters)",
            id="webhook-header-injection",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'https://exa mple.com/h'}\nrules: []\n",
            "r.yaml:2:16: the webhook URL cannot be posted to: ' ' at position 11 "
            "(a URL holds no white space or control characters)",
            id="webhook-with-a-space",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'https://u:pw@example.com'}\nrules: []\n",
            "r.yaml:2:16: secrets never live in rule files: remove the password from the "
            "webhook URL (or keep the whole URL in an environment variable: webhook_env: "
            "VARIABLE)",
            id="password-in-webhook-url",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'https://example.com', secret_env: s3cr3t!}\nrules: []\n",
            "r.yaml:2:51: 'secret_env' must be the name of an environment variable "
            "(like DESK_SECRET) that holds the secret, not the secret itself",
            id="secret-env-not-a-name",
        ),
        pytest.param(
            "channels:\n  ops: {}\nrules: []\n",
            "r.yaml:2:3: channel 'ops' needs 'telegram: CHAT_ID', 'webhook: URL' or "
            "'webhook_env: VARIABLE' (a variable holding the URL)",
            id="channel-without-destination",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'https://example.com/h', webhook_env: D_URL}\nrules: []\n",
            "r.yaml:2:41: channel 'd' has both 'webhook' and 'webhook_env': give its URL in one "
            "of them (webhook_env: a URL that is itself the credential)",
            id="webhook-and-webhook-env",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'https://example.com/h', format: teams}\nrules: []\n",
            "r.yaml:2:49: 'format' must be one of json, slack, discord (the body the webhook "
            "takes), got 'teams'",
            id="webhook-format-unknown",
        ),
        pytest.param(
            "channels:\n  d: {telegram: -100, format: slack}\nrules: []\n",
            "r.yaml:2:23: 'format' only goes with 'webhook' or 'webhook_env'",
            id="format-with-telegram",
        ),
        pytest.param(
            "channels:\n  d: {telegram: -100, webhook_env: D_URL}\nrules: []\n",
            "r.yaml:2:23: channel 'd' has both 'telegram' and 'webhook_env': a channel is one "
            "destination, define one channel for each",
            id="telegram-and-webhook-env",
        ),
        pytest.param(
            "channels:\n  d: {webhook_env: 'https://hooks.slack.com/services/T/B/x'}\nrules: []\n",
            "r.yaml:2:20: 'webhook_env' must be the name of an environment variable (like "
            "SLACK_WEBHOOK_URL) that holds the URL, not the URL itself",
            id="webhook-env-holding-the-url",
        ),
        pytest.param(
            "channels:\n  d: {webhook: 'https://example.com/h', topic: 7}\nrules: []\n",
            "r.yaml:2:41: 'topic' only goes with 'telegram' (a forum topic of that chat)",
            id="topic-with-a-webhook",
        ),
        *(
            pytest.param(
                f"channels:\n  d: {{telegram: -100, topic: {topic}}}\nrules: []\n",
                "r.yaml:2:30: 'topic' must be a forum topic's id (a positive integer like 42: "
                f"/start sent in the topic tells it), got '{topic[:31]}{'…' * (len(topic) > 32)}'",
                id=f"topic-{topic}",
            )
            for topic in ("0", "-7", "general", "2147483648", "7" * 5000)
        ),
        pytest.param(
            "channels:\n"
            "  a: {telegram: -100, topic: 7}\n"
            "  b: {telegram: -100}\n"
            "  c: {telegram: -100, topic: 7}\n"
            "rules:\n"
            "  - {id: r, symbols: [BTCUSDT], when: price > 1, notify: [a, c, b]}\n",
            "r.yaml:6:65: channels 'a' (topic 7) and 'b' (no topic) are both Telegram chat -100: "
            "an alert goes to a chat once, in one topic; notify one of them",
            id="notify-two-topics-of-one-chat",
        ),
        pytest.param(
            "channels:\n"
            "  a: {telegram: -100, topic: 7}\n"
            "  b: {telegram: -100, topic: 8}\n"
            "defaults: {notify: [a, b]}\n"
            "rules: []\n",
            "r.yaml:4:24: channels 'a' (topic 7) and 'b' (topic 8) are both Telegram chat -100: "
            "an alert goes to a chat once, in one topic; notify one of them",
            id="default-notify-two-topics-of-one-chat",
        ),
        pytest.param(
            "channels:\n  ops: {telegram: '@ops'}\nrules: []\n",
            "r.yaml:2:19: 'telegram' must be a chat id (an integer like -1001234567890), "
            "got '@ops'",
            id="telegram-not-a-chat-id",
        ),
        pytest.param(
            "channels:\n  ops: {telegram: 9223372036854775808}\nrules: []\n",
            "r.yaml:2:19: 'telegram' must be a chat id that fits in 64 bits "
            "(-9223372036854775808 to 9223372036854775807), got '9223372036854775808'",
            id="telegram-chat-id-over-64-bits",
        ),
        pytest.param(
            "channels:\n  ops: {telegram: -" + "1" * 5000 + "}\nrules: []\n",
            "r.yaml:2:19: 'telegram' must be a chat id that fits in 64 bits "
            "(-9223372036854775808 to 9223372036854775807), got '-" + "1" * 30 + "…'",
            id="telegram-chat-id-of-thousands-of-digits",
        ),
        pytest.param(
            "telegram_token: 123:abc\nrules: []\n",
            "r.yaml:1:1: secrets never live in rule files: remove 'telegram_token' (the bot "
            "token comes from ALERTBOT_TELEGRAM_TOKEN, a webhook secret from the variable its "
            "channel's secret_env names)",
            id="token-at-top-level",
        ),
        pytest.param(
            "cooldown: 5m\nrules: []\n",
            "r.yaml:1:1: unknown key 'cooldown' at the top level "
            "(it goes under 'defaults:' or in a rule)",
            id="rule-key-at-top-level",
        ),
        pytest.param(
            "defaults: {once: true}\nrules: []\n",
            "r.yaml:1:12: unknown key 'once' (expected one of: cooldown, rearm, notify, message)",
            id="unknown-key-in-defaults-without-close-match",
        ),
        pytest.param(
            "rules:\n  - id: r\n    symbols: BTCUSDT, ETHUSDT\n    when: price > 1\n",
            "r.yaml:3:14: invalid symbol 'BTCUSDT, ETHUSDT' in 'symbols': use letters, "
            "digits, '_' and the wildcards * and ? (a list is written [A, B])",
            id="symbols-comma-separated",
        ),
        pytest.param(
            "rules:\n  - id: r\n    symbols: []\n    when: price > 1\n",
            "r.yaml:3:14: 'symbols' must list at least one symbol",
            id="symbols-empty",
        ),
        pytest.param(
            "rules:\n  - id: w12\n    symbols: [X]\n    when: price > 1\n",
            "r.yaml:2:9: invalid id 'w12': ids like w12 are chat watches' (/watch); choose "
            "another id",
            id="id-of-a-chat-watch",
        ),
        pytest.param(
            "rules:\n  - id: W007\n    symbols: [X]\n    when: price > 1\n",
            "r.yaml:2:9: invalid id 'W007': ids like w12 are chat watches' (/watch); choose "
            "another id",
            id="id-like-a-chat-watch",
        ),
        pytest.param(
            "rules:\n  - just a string\n",
            "r.yaml:2:5: each rule must be a mapping with 'id', 'symbols' and 'when', "
            "got 'just a string'",
            id="rule-not-a-mapping",
        ),
        pytest.param(
            "rules: " + "[" * 3000 + "]" * 3000 + "\n",
            "r.yaml:1:1: the file nests too deeply to be a rule file",
            id="deep-nesting",
        ),
        pytest.param(
            "rules: " + "[" * 100_000 + "]" * 100_000 + "\n",
            "r.yaml:1:1: the file nests too deeply to be a rule file",
            id="nesting-deeper-than-the-c-stack",  # libyaml's own composer crashes on it
        ),
        pytest.param(
            "rules: []\nx: \x07\n",
            "r.yaml:2:4: invalid character #x0007 (special characters are not allowed)",
            id="control-character",
        ),
        # where libyaml and PyYAML read a text differently, PyYAML's reading counts
        pytest.param(
            "\ufeff" + RULE + "    when: price > x\n",
            "r.yaml:4:19: expected a number after '>', got 'x' at column 9",
            id="byte-order-mark",
        ),
        pytest.param(
            RULE + "    when: price >\ufeff x\n",
            "r.yaml:4:18: expected a number after '>', got '\\ufeff' at column 8",
            id="byte-order-mark-inside",
        ),
        pytest.param(
            RULE + "    when: price > 1\t# note\n",
            "r.yaml:4:20: YAML syntax error: a tab before a comment; write a space before '#' "
            "instead",
            id="tab-between-tokens",
        ),
        pytest.param(
            "channels:\n  d: {webhook: https://example.com/hook?x=1}\nrules: []\n",
            "r.yaml:2:40: YAML syntax error: inside {...} a value with '?' in it must be "
            'quoted: "https://example.com/hook?x=1"',
            id="question-mark-in-a-flow-value",
        ),
        pytest.param(
            RULE + "    when: !\n",
            "r.yaml:4:11: YAML tags ('!') are not supported in rule files; write the value "
            "without one",
            id="empty-tag",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    once: !!bool maybe\n",
            "r.yaml:5:11: YAML tags ('!!bool') are not supported in rule files; write the value "
            "without one",
            id="tag-that-made-maybe-false",
        ),
        pytest.param(
            RULE + "    when: !!python/object/apply:os.system price > 1\n",
            "r.yaml:4:11: YAML tags ('!!python/object/apply:os.system') are not supported in "
            "rule files; write the value without one",
            id="python-tag",
        ),
        pytest.param(
            "rules:\n  - {id: r, symbols: X, when: , once: true}\n",
            "r.yaml:2:30: 'when' needs a condition like 'price > 70000', got nothing",
            id="empty-value-in-a-flow-mapping",
        ),
    ],
)
def test_small_mistake_is_reported_at_its_place(
    text: str, expected: str, yaml_loader: YamlLoader
) -> None:
    """Each mistake's message and LINE:COL, the same whichever parser reads the text."""
    with pytest.raises(RuleFileError) as info:
        load_text(text, "r.yaml", yaml_loader=yaml_loader)

    assert [str(p) for p in info.value.problems] == [expected]


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/h\r\nX-Injected: 1",
        "https://example.com/a\tb",
        "https://example.com/\x7f",
        "http://999.1.1.1/hook",
        "http://01.2.3.4/hook",
        "https://example.com/" + "a" * 65_536,
    ],
)
def test_a_webhook_url_that_delivery_refuses_is_refused_by_the_loader(url: str) -> None:
    """What the webhook sender would refuse for good at delivery, 'alertbot check' refuses."""
    assert url_problem(url) is not None
    text = f"channels:\n  d: {{webhook: {json.dumps(url)}}}\nrules: []\n"
    with pytest.raises(RuleFileError) as info:
        load_text(text, "r.yaml")

    (problem,) = info.value.problems
    assert (problem.line, problem.column) == (2, 16)
    assert problem.message.startswith("the webhook URL cannot be posted to: ")


@pytest.mark.parametrize(
    "url", ["https://exa mple.com/h", "https://example.com/a b", "https://example.com/a\u2028b"]
)
def test_white_space_in_a_webhook_url_is_refused_at_delivery_too(url: str) -> None:
    """httpx would send it percent-encoded (to a host that cannot exist, for the first): the
    loader refuses it, and so does delivery, for good rather than retrying for a day."""
    assert url_problem(url) is not None
    with pytest.raises(RuleFileError):
        load_text(f"channels:\n  d: {{webhook: {json.dumps(url)}}}\nrules: []\n", "r.yaml")


@pytest.mark.parametrize(
    ("setting", "cooldown_ms"),
    [("cooldown: 0", 0), ("cooldown: '0'", 0), ("cooldown: 0s", 0), ("cooldown: 90S", 90_000)],
)
def test_zero_and_any_case_unit_are_valid_cooldowns(setting: str, cooldown_ms: int) -> None:
    text = f"defaults: {{cooldown: 1h}}\n{RULE}    when: price > 1\n    {setting}\n"

    assert load_text(text, "r.yaml").rules[0].cooldown_ms == cooldown_ms


def test_default_rearm_is_not_applied_to_rules_without_a_single_threshold() -> None:
    text = (
        "defaults: {rearm: 1%}\nrules:\n"
        "  - {id: a, symbols: X, when: breaks 24h low}\n"
        "  - {id: b, symbols: X, any: [price > 1, price < 0.5]}\n"
        "  - {id: c, symbols: X, when: price > 1}\n"
    )

    assert [r.rearm for r in load_text(text, "r.yaml").rules] == [0.0, 0.0, 0.01]


def test_ids_that_only_start_like_a_chat_watch_are_rule_file_ids() -> None:
    """Only w (or W) and digits is the watches' namespace; other ids starting with w are free."""
    text = "rules:\n" + "".join(
        f"  - {{id: {rule_id}, symbols: X, when: price > 1}}\n"
        for rule_id in ("w", "w12-btc", "whale", "w1x", "w.2")
    )

    assert [r.id for r in load_text(text, "r.yaml").rules] == [
        "w",
        "w12-btc",
        "whale",
        "w1x",
        "w.2",
    ]


def test_a_telegram_chat_id_may_use_all_64_bits_and_no_more() -> None:
    """Telegram's chat ids, and SQLite's integers, are signed 64-bit: both ends load, one past
    either end is refused (it passed the check, then failed every store of an alert to it)."""
    text = (
        "channels:\n  low: {telegram: -9223372036854775808}\n"
        "  high: {telegram: '09223372036854775807'}\nrules: []\n"
    )
    assert load_text(text, "r.yaml").channels == {
        "low": Channel("low", telegram=-(2**63)),
        "high": Channel("high", telegram=2**63 - 1),
    }

    with pytest.raises(RuleFileError) as info:
        load_text(text.replace("808", "809").replace("807", "808"), "r.yaml")
    assert [(p.line, p.column) for p in info.value.problems] == [(2, 19), (3, 20)]


def test_rule_file_with_an_empty_rule_list_defines_no_rules() -> None:
    ruleset = load_text("channels: {ops: {telegram: 42}}\nrules: []\n", "r.yaml")

    assert ruleset.rules == ()
    assert ruleset.channels == {"ops": Channel("ops", telegram=42)}


def test_every_tag_in_a_file_is_reported_at_its_place(yaml_loader: YamlLoader) -> None:
    text = "rules: !!seq\n  - {id: r, symbols: X, when: !local price > 1, once: !!bool yes}\n"
    with pytest.raises(RuleFileError) as info:
        load_text(text, "r.yaml", yaml_loader=yaml_loader)

    assert [str(p) for p in info.value.problems] == [
        f"r.yaml:{place}: YAML tags ('{tag}') are not supported in rule files; write the value "
        "without one"
        for place, tag in (("1:8", "!!seq"), ("2:31", "!local"), ("2:55", "!!bool"))
    ]


def test_rearm_zero_switches_off_a_band_set_under_defaults():
    text = (
        "defaults:\n  rearm: 1%\nrules:\n"
        "  - {id: banded, symbols: [BTCUSDT], when: price > 1}\n"
        "  - {id: plain, symbols: [BTCUSDT], when: price > 1, rearm: 0%}\n"
        "  - {id: hi, symbols: [BTCUSDT], when: breaks 24h high, rearm: 0%}\n"
    )
    rules = {rule.id: rule.rearm for rule in load_text(text, "r.yaml").rules}
    assert rules == {"banded": 0.01, "plain": 0.0, "hi": 0.0}


# ---------------------------------------------------------------- libyaml reads as PyYAML does

_SEEDS = sorted(p.read_text(encoding="utf-8") for p in [*GOOD.glob("*.yaml"), *BAD.glob("*.yaml")])
#: what YAML gives a meaning to, and where libyaml and PyYAML were found to part
_PIECES = [
    *" \n\t\r-:[]{},#&*!|>'\"?%@`\\~",
    *("\ufeff", "é", "😀", "\x85", "\u2028", "\x00", "\r\n", "- ", ": ", "? ", "\n  ", "\n    "),
    *("&a ", "*a", "!!str ", "!", "---", "...", "%YAML 1.1\n", "|2-", ">+", '"\\u263a"', "''"),
]


@st.composite
def _mutated_rule_files(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "copy"]))
        if kind == "insert":
            text = text[:at] + draw(st.sampled_from(_PIECES)) + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 3)) :]
        else:
            start = draw(st.integers(0, len(text)))
            text = text[:at] + text[start : start + draw(st.integers(1, 10))] + text[at:]
    return text


def _outcome(text: str, yaml_loader: YamlLoader) -> object:
    try:
        return load_text(text, "r.yaml", yaml_loader=yaml_loader)
    except RuleFileError as exc:
        return [str(p) for p in exc.problems]


@pytest.mark.skipif(LIBYAML is None, reason="PyYAML was built without libyaml")
@settings(max_examples=300, derandomize=True, deadline=None)
@given(_mutated_rule_files())
def test_libyaml_reads_any_text_as_pyyaml_does(text: str) -> None:
    """Whatever the text (rule files with characters YAML gives a meaning to put in, taken out
    or copied around), reading it with libyaml gives the rules or the problems, at the same
    places, that PyYAML's own parser gives."""
    assert LIBYAML is not None
    assert _outcome(text, LIBYAML) == _outcome(text, PURE_YAML)


# ---------------------------------------------------------------- LINE:COL as an editor counts

#: characters YAML takes for a line break and editors (and grep -n) do not
_ODD_BREAKS = {"U+2028": "\u2028", "U+2029": "\u2029", "NEL": "\x85", "CR": "\r"}


@pytest.mark.parametrize("brk", _ODD_BREAKS.values(), ids=list(_ODD_BREAKS))
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "rules:\n  - id: r\n    message: 'a{brk}b'\n    symbols: [X]\n    when: price > x\n",
            "r.yaml:5:19: expected a number after '>', got 'x' at column 9",
            id="quoted-message",
        ),
        pytest.param(
            "rules:\n  - id: r\n    message: 'a{brk}b'\n    symbols: [X]\n    once: maybe\n"
            "    when: price > 1\n",
            "r.yaml:5:11: 'once' must be true or false, got 'maybe'",
            id="value-after-it",
        ),
        pytest.param(
            'rules:\n  - id: r\n    message: "a{brk}b{brk}c"\n    symbols: [X]\n'
            "    when: price > 1\n  - id: r\n    symbols: [X]\n    when: price > 1\n",
            "r.yaml:6:9: duplicate id 'r' (first defined at r.yaml:2:9)",
            id="first-defined-at",
        ),
        pytest.param(
            "rules:\n  - id: r\n    message: 'a{brk}b'\n    symbols: [X]\n"
            "    when: 'rises 5%{brk}in 15q'\n",
            "r.yaml:5:{col}: expected a duration like 30s, 15m, 4h or 1d, got '15q' at column 13",
            id="condition-over-the-break",
        ),
    ],
)
def test_line_and_column_count_only_lf_and_crlf_as_line_breaks(
    text: str, expected: str, brk: str, yaml_loader: YamlLoader
) -> None:
    """YAML also breaks lines at U+2028, U+2029, NEL and a lone CR; editors and grep -n do not:
    LINE:COL is where an editor shows the place (a value after such a character was reported
    a line too far down)."""
    # the condition's '15q' is at column 24 of line 5: the break is one character on the line
    with pytest.raises(RuleFileError) as info:
        load_text(text.replace("{brk}", brk), "r.yaml", yaml_loader=yaml_loader)

    assert [str(p) for p in info.value.problems] == [expected.replace("{col}", "24")]


def test_a_yaml_error_after_a_line_separator_in_a_comment_is_at_the_editors_line(
    yaml_loader: YamlLoader,
) -> None:
    """A U+2028 in a comment ends the comment in YAML: the rest of it is read as YAML, and the
    error is placed on the line an editor shows it on."""
    text = "rules:\n  - id: r  # a\u2028b\n    symbols: [X]\n    when: price > 1\n"
    with pytest.raises(RuleFileError) as info:
        load_text(text, "r.yaml", yaml_loader=yaml_loader)

    assert [str(p) for p in info.value.problems] == [
        "r.yaml:2:16: YAML syntax error: expected 'key: value', got 'b' (a key needs ': ' after "
        "it); YAML reads the U+2028 at 2:15 as a line break, which ends the comment"
    ]


@pytest.mark.parametrize("brk", _ODD_BREAKS.values(), ids=list(_ODD_BREAKS))
def test_a_problem_after_an_odd_line_break_in_a_comment_names_the_break(
    brk: str, yaml_loader: YamlLoader
) -> None:
    """The rest of the comment is YAML to YAML, and an editor shows no break there: the
    message names the character that made it YAML."""
    text = f"rules: []\n# note{brk}b: 1\n"
    with pytest.raises(RuleFileError) as info:
        load_text(text, "r.yaml", yaml_loader=yaml_loader)

    name = {"\u2028": "U+2028", "\u2029": "U+2029", "\x85": "NEL (U+0085)", "\r": "CR"}[brk]
    assert [str(p) for p in info.value.problems] == [
        "r.yaml:2:8: unknown key 'b' (expected one of: channels, defaults, rules); YAML reads "
        f"the {name} at 2:7 as a line break, which ends the comment"
    ]


def test_a_crlf_file_is_reported_at_the_places_of_its_lf_twin(yaml_loader: YamlLoader) -> None:
    text = "rules:\n  - id: r\n    message: 'a\n     b'\n    symbols: [X]\n    when: price > x\n"
    places = []
    for written in (text, text.replace("\n", "\r\n")):
        with pytest.raises(RuleFileError) as info:
            load_text(written, "r.yaml", yaml_loader=yaml_loader)
        places.append([(p.line, p.column) for p in info.value.problems])
    assert places == [[(6, 19)], [(6, 19)]]


# ---------------------------------------------------------------- YAML's slips in plain words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "rules:\t# note\n  - {id: r, symbols: X, when: price > 1}\n",
            "r.yaml:1:7: YAML syntax error: a tab before a comment; write a space before '#' "
            "instead",
            id="tab-before-a-comment",
        ),
        pytest.param(
            "rules:\n\t- id: r\n\t  symbols: [X]\n\t  when: price > 1\n",
            "r.yaml:2:1: YAML syntax error: a tab in the indentation; YAML indents with spaces "
            "only",
            id="tab-for-indentation",
        ),
        pytest.param(
            RULE + "    when:\tprice > 1\n",
            "r.yaml:4:10: YAML syntax error: a tab between values; write a space instead",
            id="tab-after-a-colon",
        ),
        pytest.param(
            "rules:\n  - id: r\n    symbols: [ETH?USDT]\n    when: price > 1\n",
            "r.yaml:3:18: YAML syntax error: inside [...] a value with '?' in it must be quoted: "
            '"ETH?USDT"',
            id="question-mark-in-a-flow-sequence",
        ),
        pytest.param(
            RULE + "    exclude: [BTCUSDT, ETH?USDT]\n    when: price > 1\n",
            "r.yaml:4:27: YAML syntax error: inside [...] a value with '?' in it must be quoted: "
            '"ETH?USDT"',
            id="question-mark-in-a-later-item",
        ),
        pytest.param(
            RULE + "    exclude: [A, B\n    when: price > 1\n",
            "r.yaml:5:9: YAML syntax error: the list opened with '[' at 4:14 is not closed: "
            "expected ',' or ']' here",
            id="flow-sequence-not-closed",
        ),
        pytest.param(
            RULE + "    when:price > 1\n",
            "r.yaml:4:9: YAML syntax error: a space is missing after 'when:'; write "
            "'when: price > 1'",
            id="no-space-after-a-colon",
        ),
        pytest.param(
            "rules:\n  - id:r\n    symbols: [X]\n    when: price > 1\n",
            "r.yaml:2:7: YAML syntax error: a space is missing after 'id:'; write 'id: r'",
            id="no-space-after-a-colon-then-a-key",
        ),
        pytest.param(
            "rules:\n  - {id:r, symbols: X, when: price > 1}\n",
            "r.yaml:2:5: rule is missing 'id'\n"
            "r.yaml:2:6: unknown key 'id:r': a space is missing after 'id:'; write 'id: r'",
            id="no-space-after-a-colon-in-braces",
        ),
        pytest.param(
            "rules:\n  -id: r\n    symbols: [X]\n    when: price > 1\n",
            "r.yaml:2:3: YAML syntax error: a list item needs a space after '-'; write '- id: r'",
            id="no-space-after-a-dash",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    message: Alert: {symbol}\n",
            "r.yaml:5:14: YAML syntax error: a value with ': ' in it must be quoted: "
            '"Alert: {symbol}"',
            id="colon-and-space-in-a-value",
        ),
        pytest.param(
            "rules:\n  - id: r\n     symbols: [X]\n    when: price > 1\n",
            "r.yaml:3:13: YAML syntax error: a ':' where YAML expects none: line this key up "
            "with the keys above it, or quote a value that has ': ' in it",
            id="key-indented-too-deep",
        ),
        pytest.param(
            "rules:\n  - id: r\n   symbols: [X]\n    when: price > 1\n",
            "r.yaml:3:4: YAML syntax error: this line's indentation matches none of the lines "
            "above it; line its key up with the keys of its mapping",
            id="key-indented-between-levels",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    message: 'it's up'\n",
            "r.yaml:5:18: YAML syntax error: text after the closing quote of a value; in single "
            "quotes write '' for a quote",
            id="single-quote-inside-single-quotes",
        ),
        pytest.param(
            RULE + '    when: "price > 1\n',
            "r.yaml:4:11: YAML syntax error: the quote that starts here is never closed",
            id="quote-not-closed",
        ),
        pytest.param(
            RULE + "    when: | 70000\n",
            "r.yaml:4:11: YAML syntax error: YAML reads a value that starts with '|' as a literal "
            'block; quote it: "| 70000"',
            id="condition-starting-with-a-bar",
        ),
        pytest.param(
            RULE + "    any: [price < 1, | 5]\n",
            "r.yaml:4:22: YAML syntax error: a value that starts with '|' must be quoted: \"| 5\"",
            id="condition-starting-with-a-bar-in-a-list",
        ),
        pytest.param(
            RULE + "    when: price > 1\n    rearm: %5\n",
            "r.yaml:5:12: YAML syntax error: a value that starts with '%' must be quoted: \"%5\"",
            id="value-starting-with-percent",
        ),
        pytest.param(
            "%rules\nrules: []\n",
            "r.yaml:1:1: YAML syntax error: a line that starts with '%' is a YAML directive, "
            "which a rule file has none of; remove it, or quote a value that starts with '%'",
            id="line-starting-with-percent",
        ),
        pytest.param(
            "channels:\n  ops: {telegram: @mychannel}\nrules: []\n",
            "r.yaml:2:19: YAML syntax error: a value that starts with '@' must be quoted: "
            '"@mychannel"',
            id="value-starting-with-at",
        ),
        # already clear: left as they were
        pytest.param(
            RULE.replace(" [BTCUSDT]", "\n      - *USDT") + "    when: price > 1\n",
            "r.yaml:4:9: YAML syntax error: found undefined alias 'USDT' (a name that starts "
            "with '*' must be quoted, e.g. \"*USDT\")",
            id="unquoted-glob-in-a-block-list",
        ),
        pytest.param(
            RULE + '    when: price > 1\n    message: "C:\\path"\n',
            "r.yaml:5:18: YAML syntax error: found unknown escape character 'p' (while scanning "
            "a double-quoted scalar at 5:14)",
            id="unknown-escape",
        ),
    ],
)
def test_a_common_yaml_slip_is_told_in_plain_words(
    text: str, expected: str, yaml_loader: YamlLoader
) -> None:
    """What is wrong and how to write it, at its place, rather than PyYAML's parser words
    ('found character that cannot start any token', 'expected <block end>')."""
    with pytest.raises(RuleFileError) as info:
        load_text(text, "r.yaml", yaml_loader=yaml_loader)

    assert "\n".join(str(p) for p in info.value.problems) == expected


def test_repeat_alerts_again_while_a_rule_holds():
    """``repeat: 15m``: a level (or move, or composite) that still holds alerts again."""
    text = (
        "rules:\n"
        "  - {id: hot, symbols: [BTCUSDT], when: price > 1, repeat: 15m}\n"
        "  - {id: plain, symbols: [BTCUSDT], when: price > 1}\n"
    )
    rules = {rule.id: rule.repeat_ms for rule in load_text(text, "r.yaml").rules}
    assert rules == {"hot": 900_000, "plain": None}


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("when: price crosses above 1, repeat: 15m", "r.yaml:2:62: 'repeat' is for a condition"),
        ("when: breaks 24h high, repeat: 15m", "r.yaml:2:56: 'repeat' is for a condition"),
        ("when: price > 1, once: true, repeat: 1h", "r.yaml:2:62: 'repeat' and 'once: true'"),
        ("when: price > 1, repeat: 0", "r.yaml:2:58: 'repeat' must be a duration over 0"),
        ("when: price > 1, repeat: soon", "r.yaml:2:58: invalid 'repeat'"),
    ],
)
def test_a_repeat_that_cannot_be_is_refused_at_its_place(rule: str, problem: str) -> None:
    text = f"rules:\n  - {{id: r, symbols: [BTCUSDT], {rule}}}\n"
    with pytest.raises(RuleError) as info:
        load_text(text, "r.yaml")
    assert problem in str(info.value)
