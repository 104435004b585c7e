"""Rule files: YAML text in, a validated :class:`RuleSet` out, or every problem at its place.

The YAML is composed into nodes, never constructed into Python objects, so that each value keeps
its line and column and nothing but plain data can come out of a file; the node tree is then
walked by hand. libyaml's parser (C) reads the text when PyYAML has it (PyPI's wheels do),
PyYAML's own (Python) otherwise: 10 MB of rules in seconds rather than minutes. Either way
PyYAML's composer builds the nodes, and a text libyaml refuses, or reads otherwise than PyYAML,
is read again by PyYAML's parser, so that every message and every FILE:LINE:COL is the same with
or without libyaml.

A file that is wrong in any way is rejected whole: :class:`RuleFileError` lists
every problem as ``FILE:LINE:COL: message``. A rule with a problem is skipped and the rest are
still checked, so one run shows everything there is to fix.

Several files load as one set: ids and channel names are unique across them, and ``notify`` may
name a channel of any of them. ``defaults`` apply to the rules of their own file.
"""

from __future__ import annotations

import bisect
import difflib
import gc
import os
import re
import stat
import string
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import yaml
from yaml.composer import Composer, ComposerError
from yaml.error import Mark
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    Event,
    NodeEvent,
    ScalarEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import ReaderError

from alertbot.errors import ConditionError, RuleError
from alertbot.rules.conditions import (
    MAX_NESTING,
    TOO_DEEP,
    AllOf,
    AnyOf,
    Condition,
    Cross,
    Level,
    Move,
    parse,
)
from alertbot.rules.conditions import parse_duration as _parse_duration
from alertbot.rules.ids import CHAT_ID_RANGE, chat_id, is_reserved
from alertbot.rules.model import PLACEHOLDERS, WEBHOOK_FORMATS, Channel, Rule, RuleSet, repeats_ok
from alertbot.rules.names import is_pattern, normalise
from alertbot.rules.urls import url_text_problem
from alertbot.text import first_bad, is_text, mend

__all__ = [
    "LIBYAML",
    "PURE_YAML",
    "Problem",
    "RuleFileError",
    "YamlLoader",
    "load_file",
    "load_files",
    "load_text",
]

TOP_KEYS = ("channels", "defaults", "rules")
DEFAULT_KEYS = ("cooldown", "rearm", "notify", "message")
RULE_KEYS = (
    "id",
    "symbols",
    "exclude",
    "when",
    "all",
    "any",
    "cooldown",
    "rearm",
    "once",
    "repeat",
    "expires",
    "message",
    "notify",
)
CONDITION_KEYS = ("when", "all", "any")
CHANNEL_KEYS = ("telegram", "topic", "webhook", "webhook_env", "secret_env", "format")

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_CHAT_ID_RE = re.compile(r"-?[0-9]+")
#: a forum topic's id is a message's (Bot API: a 32-bit integer)
TOPIC_MAX = 2**31 - 1
_PERCENT_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*%")
_BARE_NUMBER_RE = re.compile(r"[+-]?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)")
#: unknown keys containing one of these get the "secrets never live in rule files" answer
_SECRET_WORDS = ("secret", "token", "password", "passwd", "apikey", "api_key", "credential")

_YAML_TAG = "tag:yaml.org,2002:"
_NULL_TAG = "tag:yaml.org,2002:null"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_NUMBER_TAGS = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: what YAML takes for a line break and editors (and grep -n) do not
_ODD_BREAK_RE = re.compile("[\x85\u2028\u2029]|\r(?!\n)")
_BREAK_NAMES = {"\x85": "NEL (U+0085)", "\u2028": "U+2028", "\u2029": "U+2029", "\r": "CR"}
#: YAML's line breaks (a CRLF is one, ending at its LF)
_YAML_BREAK_RE = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_DURATION_HINT = "a duration like 30s, 15m, 4h or 1d"
#: a double-quoted YAML escape of a surrogate (U+D800-U+DFFF), after an even run of backslashes
_SURROGATE_ESCAPE_RE = re.compile(r"(?<!\\)(?:\\\\)*(\\(?:u|U0000)[dD][89a-fA-F][0-9a-fA-F]{2})")


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong in a rule file, at a 1-based line and column."""

    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


class RuleFileError(RuleError):
    """Rule files that do not validate; ``problems`` holds every problem found."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


# ---------------------------------------------------------------- reading YAML


class _UnlikePyYaml(Exception):
    """libyaml met something that PyYAML reads otherwise."""


class _Composer(Composer):
    """PyYAML's composer with its ``compose_node`` written for rule files: it notes each alias
    (rule files refuse them; noting them here saves a second pass over the text), stops where
    libyaml reads otherwise than PyYAML (``vet``), and skips the resolver's path steps (a rule
    file loader has no path resolvers). It recurses in Python, so a file nested too deeply is a
    RecursionError; libyaml's own composer recurses in C and overflows the C stack on such a
    file (around 40,000 levels): a crash, not an error."""

    if TYPE_CHECKING:  # given by the parser a loader is built on

        def __init__(self, stream: str) -> None: ...
        def peek_event(self) -> Event: ...
        def get_event(self) -> Event: ...
        def dispose(self) -> None: ...

    #: stop (_UnlikePyYaml) at what libyaml reads otherwise than PyYAML
    vet = False
    aliases: list[AliasEvent]
    #: nodes written with an explicit tag (rule files refuse them too)
    tagged: list[ScalarEvent | CollectionStartEvent]

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event = self.peek_event()
        if isinstance(event, ScalarEvent | CollectionStartEvent) and event.tag is not None:
            self.tagged.append(event)
        if isinstance(event, ScalarEvent):
            if self.vet and (
                event.tag is not None
                or (not event.style and ("?" in event.value or not event.value) and _flow(parent))
            ):
                raise _UnlikePyYaml
        elif isinstance(event, AliasEvent):
            self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", _mark(event)
                )
            self.aliases.append(event)
            return self.anchors[event.anchor]
        elif self.vet and isinstance(event, CollectionStartEvent) and event.tag is not None:
            raise _UnlikePyYaml
        # typeshed has these methods' anchor (a name or None) as a dict
        anchor: Any = event.anchor if isinstance(event, NodeEvent) else None
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                _mark(event),
            )
        if isinstance(event, ScalarEvent):
            return self.compose_scalar_node(anchor)
        if isinstance(event, SequenceStartEvent):
            return self.compose_sequence_node(anchor)
        return self.compose_mapping_node(anchor)


def _mark(event: Event) -> Mark | None:
    """An event's start, as PyYAML's errors take it (libyaml's marks are its own class)."""
    return cast(Mark | None, event.start_mark)


#: a key and a value with no space between (``when:price > 1``); group 1 ends at the ':'
_NO_SPACE_RE = re.compile(r"(\s*(?:-\s+)?[A-Za-z_][\w.-]*):([^\s:/#][^#]*?)\s*(?:#.*)?$")


def _no_space(slip: re.Match[str]) -> str:
    key = slip.group(1).strip().removeprefix("-").strip()
    return f"a space is missing after '{key}:'; write '{key}: {slip.group(2)}'"


def _quote_it(said: str, value: str, joint: str) -> str:
    """``said``, and the value quoted as it could be written (``said`` alone when the value has
    both kinds of quote)."""
    if '"' not in value:
        return f'{said}{joint}"{value}"'
    if "'" not in value:
        return f"{said}{joint}'{value}'"
    return said


def _shown(text: str) -> str:
    return repr(text if len(text) <= 32 else text[:31] + "…")


def _odd_breaks(text: str) -> bool:
    """Whether YAML breaks a line of the text where editors (and grep -n) do not: at NEL, U+2028,
    U+2029 or a CR not followed by LF. Tests of ``in`` and counts: a regular expression takes
    ten times as long on a big file."""
    return (
        "\x85" in text
        or "\u2028" in text
        or "\u2029" in text
        or ("\r" in text and text.count("\r") != text.count("\r\n"))
    )


def _flow(parent: Node | None) -> bool:
    return isinstance(parent, SequenceNode | MappingNode) and bool(parent.flow_style)


class _PureLoader(_Composer, yaml.SafeLoader):
    """PyYAML's parser, in Python."""

    def __init__(self, stream: str) -> None:
        yaml.SafeLoader.__init__(self, stream)
        self.yaml_path_resolvers = {}  # none, even if some were registered on SafeLoader
        self.aliases = []
        self.tagged = []


#: what reads a rule file's YAML: :data:`LIBYAML` or :data:`PURE_YAML`
YamlLoader = type[_Composer]
#: PyYAML's own parser, in Python: always there
PURE_YAML: YamlLoader = _PureLoader
#: libyaml's parser, in C, when PyYAML has it (None otherwise), the default then; a text it
#: refuses or reads otherwise than PyYAML is read again by PURE_YAML, whose reading counts
LIBYAML: YamlLoader | None = None

if yaml.__with_libyaml__:

    class _LibyamlLoader(_Composer, yaml.CSafeLoader):
        """libyaml's parser, in C, under our composer (which comes first in the MRO). Where
        libyaml and PyYAML part (found by feeding both mutated rule files), ``vet`` stops it:
        at an explicit tag (``k: !`` is a null to PyYAML, a string to libyaml), and in a flow
        collection at a plain value with a ``?`` inside (``[ETH?USDT]``: PyYAML ends the value
        at the ``?`` and fails) or an empty one (``{when: , ...}``: its column differs)."""

        vet = True

        def __init__(self, stream: str) -> None:
            yaml.CSafeLoader.__init__(self, stream)
            Composer.__init__(self)
            self.yaml_path_resolvers = {}
            self.aliases = []
            self.tagged = []

    LIBYAML = _LibyamlLoader


def _compose(
    text: str, loader: YamlLoader
) -> tuple[Node | None, list[AliasEvent], list[ScalarEvent | CollectionStartEvent]]:
    """The text's node tree, its aliases and its tagged nodes, read as PyYAML reads it.

    libyaml reads it first unless the text has a tab or a byte order mark inside, which PyYAML
    treats otherwise (it refuses a tab between tokens; it counts no column for a BOM). What
    libyaml refuses is refused in its own words ("did not find expected key"), and it refuses a
    few texts PyYAML reads: PyYAML's parser reads all those again and has the say.
    """
    if loader is not PURE_YAML and not _tab_between_tokens(text) and "\ufeff" not in text:
        try:
            return _compose_with(text, loader)
        except (yaml.YAMLError, UnicodeEncodeError, RecursionError, _UnlikePyYaml):
            pass
    return _compose_with(text, PURE_YAML)


def _tab_between_tokens(text: str) -> bool:
    """Whether a tab may stand where the two parsers differ: anywhere but in a comment (after a
    '#' that starts the line or follows white space, with no quote before it on the line). A
    tab in a comment, which both read alike, does not send a big file to the slow parser."""
    if "\t" not in text:
        return False
    for line in text.split("\n"):
        tab = line.find("\t")
        if tab < 0:
            continue
        hash_at = next(
            (i for i in range(tab) if line[i] == "#" and (i == 0 or line[i - 1] == " ")), -1
        )
        if hash_at < 0 or "'" in line[:hash_at] or '"' in line[:hash_at]:
            return True
    return False


def _compose_with(
    text: str, loader: YamlLoader
) -> tuple[Node | None, list[AliasEvent], list[ScalarEvent | CollectionStartEvent]]:
    reader = loader(text)
    try:
        return reader.get_single_node(), reader.aliases, reader.tagged
    finally:
        reader.dispose()


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Reading a file makes millions of objects that live until it is read (nodes, their
    marks, the rules) and hold no reference cycles; the cyclic garbage collector would walk
    them again and again (composing 100k rules took 15 s with it, 4 s without). It waits until
    the file is read: no other thread's garbage is lost, only collected a little later."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# ---------------------------------------------------------------- loading


def load_text(text: str, filename: str, *, yaml_loader: YamlLoader | None = None) -> RuleSet:
    """Load the rules of one file's text; ``filename`` is only used in messages and origins.

    ``yaml_loader``: :data:`LIBYAML` or :data:`PURE_YAML` (default: libyaml when available).
    """
    with _gc_paused():
        source = _Source(filename, text)
        source.read(yaml_loader or LIBYAML or PURE_YAML)
        return _merge([source])


def load_file(path: str | os.PathLike[str], *, yaml_loader: YamlLoader | None = None) -> RuleSet:
    """Load one rule file (UTF-8 YAML)."""
    return load_files([path], yaml_loader=yaml_loader)


def load_files(
    paths: Iterable[str | os.PathLike[str]], *, yaml_loader: YamlLoader | None = None
) -> RuleSet:
    """Load several rule files as one set; raises :class:`RuleFileError` naming every problem."""
    loader = yaml_loader or LIBYAML or PURE_YAML
    sources: list[_Source] = []
    seen: set[object] = set()
    with _gc_paused():
        for path in paths:
            real = _identity(path)
            if real in seen:  # named twice (or by a link): its rules are not each other's twins
                continue
            seen.add(real)
            source = _Source(os.fspath(path), "")
            sources.append(source)
            try:
                if stat.S_ISFIFO(os.stat(path).st_mode):  # reading one would wait for a writer
                    source.add(1, 1, "cannot read rule file: a pipe, not a file")
                    continue
                data = Path(path).read_bytes()
            except OSError as exc:
                source.add(1, 1, f"cannot read rule file: {exc.strerror or exc}")
                continue
            try:
                source.text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                line_start = data.rfind(b"\n", 0, exc.start) + 1
                column = len(data[line_start : exc.start].decode("utf-8", errors="replace")) + 1
                if data.startswith((b"\xff\xfe", b"\xfe\xff")):  # a UTF-16 byte-order mark
                    source.add(
                        1,
                        1,
                        "not UTF-8 text: UTF-16 (what Windows Notepad calls Unicode); save it "
                        "as UTF-8",
                    )
                else:
                    source.add(data.count(b"\n", 0, exc.start) + 1, column, "not UTF-8 text")
                continue
            source.read(loader)
        return _merge(sources)


# ---------------------------------------------------------------- what one file defines


@dataclass(slots=True)
class _Ref:
    """A channel name in ``notify`` and where it was written."""

    name: str
    node: Node


@dataclass(slots=True)
class _ChannelDef:
    name: str
    node: Node  # the name's key
    channel: Channel | None  # None when the definition has problems


@dataclass(slots=True)
class _RuleDef:
    id: str | None
    id_node: Node | None
    rule: Rule | None  # None when the rule has problems
    notify: list[_Ref] | None  # the rule's own (checked at the merge); None: the file's defaults


@dataclass(slots=True)
class _Defaults:
    cooldown_ms: int | None = None
    rearm: float | None = None
    message: str | None = None
    notify: list[_Ref] | None = None


class _Source:
    """One file: its text, what it defines, and its problems."""

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self.problems: list[Problem] = []
        self.channels: list[_ChannelDef] = []
        self.rules: list[_RuleDef] = []
        self.defaults = _Defaults()
        #: the text has a line break that YAML counts and an editor does not (set by read)
        self.odd_breaks = False
        self._line_starts: list[int] | None = None

    # -- problems and places
    def add(self, line: int, column: int, message: str) -> None:
        self.problems.append(Problem(self.name, line, column, message))

    def at(self, node: Node, message: str) -> None:
        self.at_index(node.start_mark, message)

    def at_index(self, mark: Mark, message: str) -> None:
        """A problem at a mark, naming an odd line break that made a comment's rest YAML."""
        self.add(*self.place(mark), message + self.break_hint(mark.index))

    def break_hint(self, index: int) -> str:
        """Where a problem follows a NEL, U+2028, U+2029 or lone CR on its line (as an editor
        shows it) in a comment, or with only white space between, what YAML made of it."""
        if not self.odd_breaks:
            return ""
        text = self.text
        begin = text.rfind("\n", 0, index) + 1
        odd = None
        for found in _ODD_BREAK_RE.finditer(text, begin, index + 1):
            if found.start() < index:
                odd = found
        if odd is None:
            return ""
        in_comment = re.search(r"(?:^|\s)#", text[begin : odd.start()]) is not None
        if not in_comment and text[odd.end() : index].strip():
            return ""
        line, column = self.place_at(odd.start())
        name = _BREAK_NAMES[odd.group()]
        ends = ", which ends the comment" if in_comment else ""
        return f"; YAML reads the {name} at {line}:{column} as a line break{ends}"

    def where(self, node: Node) -> str:
        line, column = self.place(node.start_mark)
        return f"{self.name}:{line}:{column}"

    def place(self, mark: Mark) -> tuple[int, int]:
        """A YAML mark's 1-based line and column as an editor shows them: only LF (and CRLF)
        break lines. YAML also breaks them at NEL, U+2028, U+2029 and a lone CR, so a text that
        has one is placed by the mark's index instead."""
        if not self.odd_breaks:
            return mark.line + 1, mark.column + 1
        return self.place_at(mark.index)

    def place_at(self, index: int) -> tuple[int, int]:
        """The 1-based line and column of the text's character ``index``; LF ends a line."""
        starts = self._line_starts
        if starts is None:
            starts = self._line_starts = [0, *(m.end() for m in re.finditer("\n", self.text))]
        line = bisect.bisect_right(starts, index)
        return line, index - starts[line - 1] + 1

    def yaml_line(self, index: int) -> str:
        """The text from character ``index`` to the end of its line as YAML counts lines."""
        found = _YAML_BREAK_RE.search(self.text, index)
        return self.text[index : found.start() if found else len(self.text)]

    # -- the file
    def read(self, loader: YamlLoader) -> None:
        # a leading byte order mark is not text: libyaml's marks leave it out, PyYAML's index
        # (which places a value's columns) counted it
        self.text = self.text.removeprefix("\ufeff")
        self.odd_breaks = _odd_breaks(self.text)
        try:
            root, aliases, tagged = _compose(self.text, loader)
            if root is None or _is_null(root):  # nothing, only comments, or a lone '---'
                self.add(1, 1, "empty rule file: expected a mapping with 'rules:'")
            elif self._no_aliases(aliases) & self._no_tags(tagged):  # both reported
                if "\\u" in self.text or "\\U" in self.text:  # else no surrogate can be there
                    self._only_text(root)
                self.top(root)
        except yaml.MarkedYAMLError as exc:
            self._yaml_error(exc)
        except ReaderError as exc:
            # a character YAML does not allow (control characters and the like)
            line, column = self.place_at(exc.position)
            self.add(line, column, f"invalid character #x{exc.character:04x} ({exc.reason})")
        except yaml.YAMLError as exc:  # not expected from a str input; never crash on it
            self.add(1, 1, f"YAML error: {exc}")
        except RecursionError:
            self.add(1, 1, "the file nests too deeply to be a rule file")

    def _only_text(self, root: Node) -> None:
        """A problem at each string (key or value) that is not valid Unicode: a lone surrogate,
        which only an escape (``"\\ud800"``) can make, and which no UTF-8 text can hold (the
        database, Telegram and the webhook's JSON all refuse it). The string is mended (U+FFFD)
        once reported, so that the file's other problems are still found and quote no
        surrogate."""
        seen: set[int] = set()
        todo: list[Node] = [root]
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node, ScalarNode):
                if isinstance(node.value, str) and not is_text(node.value):
                    self._not_text(node)
                    node.value = mend(node.value)
            elif isinstance(node, SequenceNode):
                todo.extend(reversed(node.value))
            elif isinstance(node, MappingNode):
                for key, value in reversed(node.value):
                    todo.extend((value, key))

    def _not_text(self, node: Node) -> None:
        start, end = node.start_mark.index, node.end_mark.index
        found = _SURROGATE_ESCAPE_RE.search(self.text, start, end)
        value = cast(str, node.value)
        index = first_bad(value)
        escape = f"\\u{ord(value[index]):04x}" if found is None else found.group(1)
        hint = ""
        pair = value[index : index + 2]
        if len(pair) == 2 and "\ud800" <= pair[0] <= "\udbff" and "\udc00" <= pair[1] <= "\udfff":
            joined = pair.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
            hint = (
                f"; a character past U+FFFF is one escape of 8 digits, not a pair of \\u "
                f"escapes: \\U{ord(joined):08X}"
            )
        where = found.start(1) if found is not None else start
        self.add(
            *self.place_at(where),
            f"{escape} is not valid Unicode: a lone surrogate, which no UTF-8 text can hold{hint}",
        )

    def _yaml_error(self, exc: yaml.MarkedYAMLError) -> None:
        mark = exc.problem_mark or exc.context_mark
        line, column = self.place(mark) if mark is not None else (1, 1)
        problem = exc.problem or "invalid YAML"
        plain = self._plain_words(exc) if mark is not None else None
        if plain is not None:
            index, message = plain
            hint = self.break_hint(index)
            self.add(*self.place_at(index), f"YAML syntax error: {message}{hint}")
            return
        if problem == "but found another document":
            message = "a rule file holds a single YAML document; found a second one"
        elif problem.startswith("found undefined alias"):
            message = (
                f"YAML syntax error: {problem} (a name that starts with '*' must be quoted, "
                'e.g. "*USDT")'
            )
        else:
            message = f"YAML syntax error: {problem}"
            if exc.context and exc.context_mark is not None:
                context_line, context_column = self.place(exc.context_mark)
                message += f" ({exc.context} at {context_line}:{context_column})"
            text = self.yaml_line(mark.index - mark.column) if mark is not None else ""
            # the usual cause: an unquoted template, which YAML reads as a mapping
            if re.match(r"\s*(?:-\s+)?message:\s*\{", text):
                message += "; quote a message that starts with '{'"
        hint = self.break_hint(mark.index) if mark is not None else ""
        self.add(line, column, message + hint)

    def _plain_words(self, exc: yaml.MarkedYAMLError) -> tuple[int, str] | None:
        """A common slip that PyYAML tells in its parser's words ('found character that cannot
        start any token', 'expected <block end>'), told as what is wrong and how to write it:
        the index of the place and the message; None for any other error."""
        text = self.text
        problem = exc.problem or ""
        mark, context = exc.problem_mark, exc.context_mark
        if mark is None:
            return None
        at = mark.index
        char = text[at : at + 1]
        line_start = at - mark.column
        if exc.context == "while scanning a block scalar" and context is not None:
            # a condition written as in chat, 'when: > 70000'
            indicator = text[context.index : context.index + 1]
            if indicator in (">", "|"):
                block = "folded" if indicator == ">" else "literal"
                said = f"YAML reads a value that starts with '{indicator}' as a {block} block"
                value = self._value_at(context.index)
                return context.index, _quote_it(f"{said}; quote it", value, ": ")
        if problem.startswith("found character") and problem.endswith("cannot start any token"):
            if char == "\t":
                if not text[line_start:at].strip(" \t"):
                    return at, "a tab in the indentation; YAML indents with spaces only"
                if text[at:].lstrip(" \t").startswith("#"):
                    return at, "a tab before a comment; write a space before '#' instead"
                return at, "a tab between values; write a space instead"
            said = f"a value that starts with '{char}' must be quoted"
            return at, _quote_it(said, self._value_at(at), ": ")
        flow = re.fullmatch(r"expected ',' or '([\]}])', but got .*", problem)
        if flow is not None:
            kind = "[...]" if flow.group(1) == "]" else "{...}"
            if char == "?":  # PyYAML ends a plain value at a '?' inside [...] and {...}
                begin = at
                while begin > 0 and text[begin - 1] not in " \t\r\n[{,\x85\u2028\u2029":
                    begin -= 1
                word = re.split(r"[\s,\]}]", text[begin:])[0]
                said = f"inside {kind} a value with '?' in it must be quoted"
                return at, _quote_it(said, word, ": ")
            if context is not None:
                what = "list" if flow.group(1) == "]" else "mapping"
                bracket = text[context.index : context.index + 1]
                opened = "{}:{}".format(*self.place(context))
                return at, (
                    f"the {what} opened with '{bracket}' at {opened} is not closed: "
                    f"expected ',' or '{flow.group(1)}' here"
                )
        if problem.startswith("could not find expected ':'") and context is not None:
            key_line = self.yaml_line(context.index)
            slip = _NO_SPACE_RE.match(key_line)
            if slip is not None:
                return context.index + slip.end(1), _no_space(slip)
            return context.index, (
                f"expected 'key: value', got {_shown(key_line.strip())} (a key needs ': ' after it)"
            )
        if problem == "mapping values are not allowed here":
            return self._unexpected_colon(at, line_start)
        if problem.startswith("expected <block end>, but found '<block mapping start>'"):
            return at, (
                "this line's indentation matches none of the lines above it; line its key up "
                "with the keys of its mapping"
            )
        if problem.startswith("expected <block end>, but found '<block sequence start>'"):
            return at, (
                "this line's indentation matches none of the lines above it; line its '-' up "
                "with the other items of its list"
            )
        if problem.startswith("expected <block end>, but found '<scalar>'"):
            before = text[max(at - 100, 0) : at].rstrip(" \t")[-1:]
            if before == "'":
                return at, (
                    "text after the closing quote of a value; in single quotes write '' for a quote"
                )
            if before == '"':
                return at, (
                    'text after the closing quote of a value; in double quotes write \\" for a '
                    "quote"
                )
        if (
            problem == "found unexpected end of stream"
            and exc.context == "while scanning a quoted scalar"
            and context is not None
        ):
            return context.index, "the quote that starts here is never closed"
        if problem.startswith("expected '<document start>'"):
            directive = re.compile("^%", re.MULTILINE).search(text, 0, at)
            if directive is not None:
                return directive.start(), (
                    "a line that starts with '%' is a YAML directive, which a rule file has none "
                    "of; remove it, or quote a value that starts with '%'"
                )
        return None

    def _unexpected_colon(self, at: int, line_start: int) -> tuple[int, str]:
        """'mapping values are not allowed here': a ': ' YAML did not expect, most often after
        a slip on the line above."""
        above = self._line_above(line_start)
        if above is not None:
            above_start, above_line = above
            slip = _NO_SPACE_RE.match(above_line)
            if slip is not None:
                return above_start + slip.end(1), _no_space(slip)
            dash = re.match(r"(\s*)-(?=[^\s-])", above_line)
            if dash is not None:
                item = above_line[dash.end() :].strip()
                return above_start + dash.end(1), (
                    f"a list item needs a space after '-'; write '- {item}'"
                )
        line = self.yaml_line(line_start)
        value = re.match(r"(\s*(?:-\s+)?[^\s#'\"{\[][^:#]*:\s+)\S", line)
        if value is not None and at - line_start >= value.end(1):
            said = "a value with ': ' in it must be quoted"
            return line_start + value.end(1), _quote_it(
                said, self._value_at(line_start + value.end(1)), ": "
            )
        return at, (
            "a ':' where YAML expects none: line this key up with the keys above it, or quote "
            "a value that has ': ' in it"
        )

    def _line_above(self, line_start: int) -> tuple[int, str] | None:
        """The start and text of the last line before ``line_start`` that holds more than white
        space and a comment (lines as YAML counts them)."""
        text = self.text
        end = line_start
        while end > 0:
            stop = end - 1  # the break that ends the line above
            if text[stop] == "\n" and stop > 0 and text[stop - 1] == "\r":
                stop -= 1
            begin = stop
            while begin > 0 and text[begin - 1] not in "\n\r\x85\u2028\u2029":
                begin -= 1
            line = text[begin:stop]
            if line.strip() and not line.lstrip().startswith("#"):
                return begin, line
            end = begin
        return None

    def _value_at(self, index: int) -> str:
        """The plain value that starts at ``index``, as far as its line, a comment or (inside
        brackets) a ',', ']' or '}' goes."""
        rest = self.yaml_line(index)
        if self._in_flow(index):
            rest = re.split(r"[,\]}]", rest)[0]
        return re.split(r"\s#", rest)[0].strip()

    def _in_flow(self, index: int) -> bool:
        """Whether ``index`` is inside [...] or {...} on its line (a good guess for a slip)."""
        line = self.text[self.text.rfind("\n", 0, index) + 1 : index]
        return line.count("[") + line.count("{") > line.count("]") + line.count("}")

    def _no_aliases(self, aliases: list[AliasEvent]) -> bool:
        """Reject aliases: shared nodes could make the walk loop or explode, and
        ``defaults:`` already covers what a rule file would share."""
        for event in aliases:
            self._add_at(
                event,
                f"aliases ('*{event.anchor}') are not supported in rule files; "
                "put shared settings under 'defaults:'",
            )
        return not aliases

    def _no_tags(self, tagged: list[ScalarEvent | CollectionStartEvent]) -> bool:
        """Reject explicit tags: the loader reads every value's text the way its key needs
        it, so a tag would be silently ignored ('once: !!bool maybe' was false), and a
        '!!python/...' tag has no business in a rule file."""
        for event in tagged:
            tag = str(event.tag)
            shown = "!!" + tag.removeprefix(_YAML_TAG) if tag.startswith(_YAML_TAG) else tag
            self._add_at(
                event,
                f"YAML tags ('{shown}') are not supported in rule files; write the value "
                "without one",
            )
        return not tagged

    def _add_at(self, event: Event, message: str) -> None:
        """A problem where a YAML event starts (1:1 when it has no mark)."""
        mark = _mark(event)
        if mark is None:
            self.add(1, 1, message)
        else:
            self.at_index(mark, message)

    def top(self, root: Node) -> None:
        if not isinstance(root, MappingNode):
            self.at(root, f"a rule file must be a mapping with 'rules:', got {_describe(root)}")
            return
        keys = self.mapping(root, TOP_KEYS, where="top")
        if "channels" in keys:
            self.read_channels(keys["channels"][1])
        if "defaults" in keys:
            self.read_defaults(keys["defaults"][1])
        if "rules" not in keys:
            self.at(root, "missing 'rules:': a rule file lists its rules under 'rules:'")
            return
        rules = keys["rules"][1]
        if not isinstance(rules, SequenceNode):
            self.at(rules, f"'rules' must be a list of rules, got {_describe(rules)}")
            return
        for item in rules.value:
            self.read_rule(item)

    # -- mappings and keys
    def mapping(
        self, node: MappingNode, allowed: Sequence[str] | None, where: str = ""
    ) -> dict[str, tuple[Node, Node]]:
        """Keys to (key node, value node); reports duplicate, unknown and non-name keys."""
        found: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode) or key.tag == _NULL_TAG:  # _is_null, inline
                self.at(key, f"a key must be a name, got {_describe(key)}")
                continue
            name = str(key.value)
            if name in found:
                first = self.where(found[name][0])
                self.at(key, f"duplicate key '{name}' (first defined at {first})")
            elif allowed is not None and name not in allowed:
                self.at(key, _unknown_key(name, allowed, where))
            else:
                found[name] = (key, value)
        return found

    # -- channels
    def read_channels(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.at(
                node,
                f"'channels' must be a mapping of names to destinations, got {_describe(node)}",
            )
            return
        for name, (key, value) in self.mapping(node, None).items():
            before = len(self.problems)
            if not _NAME_RE.fullmatch(name):
                self.at(
                    key, f"invalid channel name '{name}': use letters, digits, '_', '.' and '-'"
                )
            channel = self.read_channel(name, key, value)
            ok = channel is not None and len(self.problems) == before
            self.channels.append(_ChannelDef(name, key, channel if ok else None))

    def read_channel(self, name: str, name_node: Node, node: Node) -> Channel | None:
        if not isinstance(node, MappingNode):
            self.at(
                node,
                f"channel '{name}' must be a mapping like {{telegram: CHAT_ID}} or "
                f"{{webhook: URL}}, got {_describe(node)}",
            )
            return None
        before = len(self.problems)
        keys = self.mapping(node, CHANNEL_KEYS, where="channel")
        given = [k for k in ("telegram", "webhook", "webhook_env") if k in keys]
        if len(given) > 1:
            later = max((keys[k][0] for k in given), key=_position)
            if "telegram" in given:
                other = "webhook" if "webhook" in given else "webhook_env"
                problem = (
                    f"channel '{name}' has both 'telegram' and '{other}': a channel is one "
                    "destination, define one channel for each"
                )
            else:
                problem = (
                    f"channel '{name}' has both 'webhook' and 'webhook_env': give its URL in "
                    "one of them (webhook_env: a URL that is itself the credential)"
                )
            self.at(later, problem)
            return None
        if "telegram" in keys:
            for key in ("secret_env", "format"):
                if key in keys:
                    self.at(keys[key][0], f"'{key}' only goes with 'webhook' or 'webhook_env'")
            chat_id = self.chat_id(keys["telegram"][1])
            topic = self.topic(keys["topic"][1]) if "topic" in keys else None
            if chat_id is None or ("topic" in keys and topic is None):
                return None
            return Channel(name, telegram=chat_id, topic=topic)
        if "topic" in keys:
            self.at(
                keys["topic"][0],
                "'topic' only goes with 'telegram' (a forum topic of that chat)",
            )
        if "webhook" in keys or "webhook_env" in keys:
            secret_env = form = None
            if "secret_env" in keys:
                secret_env = self.env_name(keys["secret_env"][1], "secret_env", "DESK_SECRET")
            if "format" in keys:
                form = self.webhook_format(keys["format"][1])
                if form is None:
                    return None
            if "webhook_env" in keys:
                var = self.env_name(keys["webhook_env"][1], "webhook_env", "SLACK_WEBHOOK_URL")
                if var is None:
                    return None
                return Channel(name, webhook_env=var, secret_env=secret_env, format=form)
            url = self.url(keys["webhook"][1])
            if url is None:
                return None
            return Channel(name, webhook=url, secret_env=secret_env, format=form)
        if len(self.problems) == before:  # otherwise a misspelt key already said it
            self.at(
                name_node,
                f"channel '{name}' needs 'telegram: CHAT_ID', 'webhook: URL' or "
                "'webhook_env: VARIABLE' (a variable holding the URL)",
            )
        return None

    def chat_id(self, node: Node) -> int | None:
        text = _text(node)
        if text is None or not _CHAT_ID_RE.fullmatch(text.strip()):
            self.at(
                node,
                f"'telegram' must be a chat id (an integer like -1001234567890), "
                f"got {_describe(node)}",
            )
            return None
        chat = chat_id(text)
        if chat is None:
            self.at(
                node,
                f"'telegram' must be a chat id that fits in 64 bits ({CHAT_ID_RANGE}), "
                f"got {_describe(node, 32)}",
            )
        return chat

    def topic(self, node: Node) -> int | None:
        """A forum topic's id (Telegram's ``message_thread_id``: the number after the chat's in
        a link to the topic, ``t.me/c/1234567890/42``; /start sent in the topic tells it)."""
        text = _text(node)
        value = text.strip() if text is not None else ""
        if not (
            value.isascii() and value.isdigit() and len(value) <= 10 and 0 < int(value) <= TOPIC_MAX
        ):
            self.at(
                node,
                "'topic' must be a forum topic's id (a positive integer like 42: /start sent "
                f"in the topic tells it), got {_describe(node, 32)}",
            )
            return None
        return int(value)

    def url(self, node: Node) -> str | None:
        text = _text(node)
        problem = url_text_problem(text.strip()) if text is not None else None
        if problem is not None:
            self.at(node, f"the webhook URL cannot be posted to: {problem}")
            return None
        try:
            parts = urlsplit(text.strip()) if text is not None else None
        except ValueError:  # an IPv6 bracket left open
            parts = None
        try:
            port = parts.port if parts is not None else None
        except ValueError:  # out of 0-65535, or no number
            port = -1
        if (
            text is None
            or parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
        ):
            self.at(node, f"'webhook' must be an http(s) URL, got {_describe(node)}")
            return None
        if port is not None and not 1 <= port <= 65535:
            self.at(node, f"the webhook URL's port must be in 1-65535, got {_describe(node)}")
            return None
        if parts.password is not None:
            self.at(
                node,
                "secrets never live in rule files: remove the password from the webhook URL "
                "(or keep the whole URL in an environment variable: webhook_env: VARIABLE)",
            )
            return None
        return text.strip()

    def webhook_format(self, node: Node) -> str | None:
        text = _text(node)
        if text is None or text.strip().lower() not in WEBHOOK_FORMATS:
            self.at(
                node,
                f"'format' must be one of {', '.join(WEBHOOK_FORMATS)} (the body the webhook "
                f"takes), got {_describe(node)}",
            )
            return None
        return text.strip().lower()

    def env_name(self, node: Node, key: str, example: str) -> str | None:
        text = _text(node)
        if text is None or not _ENV_NAME_RE.fullmatch(text.strip()):
            held = "the secret" if key == "secret_env" else "the URL"
            self.at(
                node,
                f"'{key}' must be the name of an environment variable (like {example}) "
                f"that holds {held}, not {held} itself",
            )
            return None
        return text.strip()

    # -- defaults
    def read_defaults(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.at(node, f"'defaults' must be a mapping, got {_describe(node)}")
            return
        keys = self.mapping(node, DEFAULT_KEYS, where="defaults")
        defaults = self.defaults
        if "cooldown" in keys:
            defaults.cooldown_ms = self.duration("cooldown", keys["cooldown"][1])
        if "rearm" in keys:
            defaults.rearm = self.rearm(keys["rearm"][1])
        if "message" in keys:
            defaults.message = self.template(keys["message"][1])
        if "notify" in keys:
            defaults.notify = self.notify(keys["notify"][1])

    # -- rules
    def read_rule(self, node: Node) -> None:
        if not isinstance(node, MappingNode):
            self.at(
                node,
                "each rule must be a mapping with 'id', 'symbols' and 'when', "
                f"got {_describe(node)}",
            )
            return
        before = len(self.problems)
        keys = self.mapping(node, RULE_KEYS, where="rule")

        rule_id: str | None = None
        id_node: Node | None = None
        if "id" not in keys:
            self.at(node, "rule is missing 'id'")
        else:
            id_node = keys["id"][1]
            rule_id = self.rule_id(id_node)
        label = f"rule '{rule_id}'" if rule_id is not None else "rule"

        symbols: tuple[str, ...] | None = None
        if "symbols" not in keys:
            self.at(node, f"{label} is missing 'symbols'")
        else:
            symbols = self.symbols("symbols", keys["symbols"][1])
        exclude: tuple[str, ...] | None = ()
        if "exclude" in keys:
            exclude = self.symbols("exclude", keys["exclude"][1])

        condition = self.rule_condition(node, keys, label)

        defaults = self.defaults
        cooldown_ms: int | None = defaults.cooldown_ms or 0
        if "cooldown" in keys:
            cooldown_ms = self.duration("cooldown", keys["cooldown"][1])
        rearm: float | None = 0.0
        if "rearm" in keys:
            rearm = self.rearm(keys["rearm"][1])
            if rearm and condition is not None and not _has_threshold(condition):
                self.at(keys["rearm"][0], _rearm_refusal(condition))
        elif defaults.rearm is not None and condition is not None and _has_threshold(condition):
            rearm = defaults.rearm  # a default band only applies where there is a threshold
        once: bool | None = False
        if "once" in keys:
            once = self.boolean("once", keys["once"][1])
        repeat_ms: int | None = None
        if "repeat" in keys:
            repeat_ms = self.repeat(keys["repeat"], condition, once)
        expires_ms: int | None = None
        if "expires" in keys:
            expires_ms = self.expires(keys["expires"][1])
        message = defaults.message
        if "message" in keys:
            message = self.template(keys["message"][1])
        notify: list[_Ref] | None = None
        if "notify" in keys:
            notify = self.notify(keys["notify"][1])

        refs = notify if notify is not None else defaults.notify or []
        rule: Rule | None = None
        if (
            len(self.problems) == before
            and rule_id is not None
            and condition is not None
            and symbols is not None
            and exclude is not None
            and cooldown_ms is not None
            and rearm is not None
            and once is not None
        ):
            rule = Rule(
                id=rule_id,
                condition=condition,
                symbols=symbols,
                exclude=exclude,
                cooldown_ms=cooldown_ms,
                rearm=rearm,
                once=once,
                repeat_ms=repeat_ms or None,
                expires_ms=expires_ms,
                message=message,
                notify=tuple(dict.fromkeys(ref.name for ref in refs)),
                origin=self.where(node),
            )
        self.rules.append(_RuleDef(rule_id, id_node, rule, notify))

    def rule_id(self, node: Node) -> str | None:
        text = _text(node)
        if text is None:
            self.at(node, f"'id' must be a name like btc-70k, got {_describe(node)}")
            return None
        if not _NAME_RE.fullmatch(text):
            self.at(node, f"invalid id '{text}': use letters, digits, '_', '.' and '-'")
            return None
        if is_reserved(text):
            self.at(
                node,
                f"invalid id '{text}': ids like w12 are chat watches' (/watch); choose another id",
            )
            return None
        return text

    def list_of(self, key: str, node: Node, what: str) -> list[Node] | None:
        """The items of a list, or of a single scalar written without brackets."""
        if isinstance(node, SequenceNode):
            return list(node.value)
        if isinstance(node, ScalarNode) and not _is_null(node):
            return [node]
        self.at(node, f"'{key}' must be a list of {what}, got {_describe(node)}")
        return None

    def symbols(self, key: str, node: Node) -> tuple[str, ...] | None:
        items = self.list_of(key, node, "symbol names")
        if items is None:
            return None
        if key == "symbols" and not items:
            self.at(node, "'symbols' must list at least one symbol")
            return None
        names: list[str] = []
        ok = True
        for item in items:
            text = _text(item)
            if text is None:
                self.at(item, f"each entry of '{key}' must be a symbol name, got {_describe(item)}")
                ok = False
            elif not is_pattern(normalise(text)):
                hint = " (a list is written [A, B])" if re.search(r"[\s,]", text.strip()) else ""
                self.at(
                    item,
                    f"invalid symbol '{text}' in '{key}': use letters, digits, '_' and the "
                    f"wildcards * and ?{hint}",
                )
                ok = False
            elif normalise(text) not in names:
                names.append(normalise(text))
        return tuple(names) if ok else None

    def rule_condition(
        self, node: MappingNode, keys: dict[str, tuple[Node, Node]], label: str
    ) -> Condition | None:
        present = [k for k in CONDITION_KEYS if k in keys]
        if len(present) > 1:
            present.sort(key=lambda k: _position(keys[k][0]))
        if not present:
            self.at(node, f"{label} needs a condition: one of 'when', 'all' or 'any'")
            return None
        for extra in present[1:]:
            self.at(
                keys[extra][0],
                f"'{extra}' cannot be combined with '{present[0]}': a rule has exactly one "
                "of 'when', 'all' or 'any'",
            )
        if len(present) > 1:
            return None
        return self.condition(present[0], keys[present[0]][1])

    def condition(self, key: str, node: Node, nesting: int = 0) -> Condition | None:
        """``when: TEXT``, or ``all:``/``any:`` with a list of conditions or nested lists;
        ``nesting``: the all/any lists around this one."""
        if key == "when":
            if isinstance(node, SequenceNode):
                self.at(node, "'when' takes one condition; use 'all:' or 'any:' for a list")
                return None
            return self.condition_text("when", node, nesting)
        if not isinstance(node, SequenceNode) or not node.value:
            self.at(node, f"'{key}' must be a non-empty list of conditions, got {_describe(node)}")
            return None
        nesting += 1
        parts: list[Condition | None] = []
        for item in node.value:
            if isinstance(item, MappingNode):
                parts.append(self.nested_condition(key, item, nesting))
            else:
                parts.append(self.condition_text(key, item, nesting))
        done = [p for p in parts if p is not None]
        if len(done) < len(parts):
            return None
        return AllOf(tuple(done)) if key == "all" else AnyOf(tuple(done))

    def nested_condition(self, key: str, node: MappingNode, nesting: int) -> Condition | None:
        before = len(self.problems)
        keys = self.mapping(node, ("all", "any"), where="condition")
        if len(keys) == 1:
            ((inner, (inner_key, value)),) = keys.items()
            if nesting >= MAX_NESTING:
                self.at(inner_key, TOO_DEEP)
                return None
            return self.condition(inner, value, nesting)
        if len(keys) == 2:
            later = max(keys["all"][0], keys["any"][0], key=_position)
            self.at(later, "a nested condition is either {all: [...]} or {any: [...]}, not both")
        elif len(self.problems) == before:
            self.at(
                node,
                f"each entry of '{key}' must be a condition or {{all: [...]}} / {{any: [...]}}",
            )
        return None

    def condition_text(self, key: str, node: Node, nesting: int) -> Condition | None:
        text = _text(node)
        if text is None or not isinstance(node, ScalarNode):
            self.at(
                node,
                f"'{key}' needs a condition like 'price > 70000', got {_describe(node)}",
            )
            return None
        try:
            return parse(text, nesting)
        except ConditionError as exc:
            self.add(*self._column_in_file(node, exc.column), exc.message)
            return None

    def _column_in_file(self, node: ScalarNode, column: int) -> tuple[int, int]:
        """Where column ``column`` of a scalar's value is in the file. YAML's folding of a
        multi-line value (plain, quoted or block) only changes whitespace, so the value's other
        characters are found in the source in order; a value that changed otherwise (escapes
        in double quotes, '' in single quotes) gets the scalar's start."""
        start, end = node.start_mark, node.end_mark
        raw = self.text[start.index : end.index]
        value = str(node.value)
        if not value.strip():
            return self.place(start)
        if node.style in ("|", ">"):
            header = _YAML_BREAK_RE.search(raw)  # the content starts on the line after it
            if header is None:
                return self.place(start)
            i = header.end()
        else:
            i = 1 if node.style in ("'", '"') else 0
        want = min(max(column - 1, 0), len(value))
        for k in range(want + (want < len(value))):
            ch = value[k]
            if ch.isspace():
                continue
            while i < len(raw) and raw[i] != ch:
                if not raw[i].isspace():
                    return self.place(start)
                i += 1
            if i == len(raw):
                return self.place(start)
            i += k < want  # the last one is the character the column names: stop on it
        return self.place_at(start.index + i)

    # -- values
    def duration(self, key: str, node: Node) -> int | None:
        text = _text(node)
        if text is None:
            self.at(node, f"'{key}' must be {_DURATION_HINT} (or 0), got {_describe(node)}")
            return None
        if text.strip() == "0":
            return 0
        try:
            return _parse_duration(text)
        except ValueError as exc:
            self.at(node, f"invalid '{key}': {exc}")
            return None

    def repeat(
        self, key_value: tuple[Node, Node], condition: Condition | None, once: bool | None
    ) -> int | None:
        """``repeat: 15m``: a duration over 0, for a condition that can hold (not a crossing
        or a breakout) of a rule that is not ``once``."""
        key, node = key_value
        repeat_ms = self.duration("repeat", node)
        if not repeat_ms:
            if repeat_ms == 0:
                self.at(node, "'repeat' must be a duration over 0, e.g. 15m (leave it out: none)")
            return None
        if condition is not None and not repeats_ok(condition):
            self.at(
                key,
                "'repeat' is for a condition that holds for a while (a level, a move): a "
                "crossing or a breakout is true on one tick",
            )
        if once:
            self.at(key, "'repeat' and 'once: true' exclude each other")
        return repeat_ms

    def rearm(self, node: Node) -> float | None:
        text = _text(node)
        if text is None:
            self.at(node, f"'rearm' must be a percentage like 0.5%, got {_describe(node)}")
            return None
        text = text.strip()
        if node.tag in _NUMBER_TAGS or _BARE_NUMBER_RE.fullmatch(text):
            self.at(node, f"'rearm' must be a percentage: write '{text}%' instead of '{text}'")
            return None
        match = _PERCENT_RE.fullmatch(text)
        if match is None:
            self.at(node, f"'rearm' must be a percentage like 0.5%, got '{text}'")
            return None
        percent = Decimal(match.group(1))
        fraction = float(percent / 100)
        # 0% switches off a band set under defaults; a fraction that rounds up to 1.0 is a
        # band of 100% (re-arming only at 0)
        if not (0 <= percent < 100 and fraction < 1.0):
            self.at(node, f"'rearm' must be at least 0% and less than 100%, got '{text}'")
            return None
        return fraction

    def boolean(self, key: str, node: Node) -> bool | None:
        if isinstance(node, ScalarNode) and node.tag == _BOOL_TAG:
            return str(node.value).lower() in ("true", "yes", "on")
        quoted = isinstance(node, ScalarNode) and node.style in ("'", '"')
        if quoted and str(node.value).lower() in ("true", "false"):
            self.at(
                node, f"'{key}' must be true or false without quotes, got the text '{node.value}'"
            )
            return None
        self.at(node, f"'{key}' must be true or false, got {_describe(node)}")
        return None

    def expires(self, node: Node) -> int | None:
        # PyYAML tags such a value as a timestamp; the raw text is read, never constructed
        text = _text(node)
        try:
            when = datetime.fromisoformat(text.strip()) if text is not None else None
        except ValueError:
            when = None
        if when is None:
            self.at(
                node,
                "'expires' must be an ISO-8601 time like 2026-12-31T00:00:00Z, "
                f"got {_describe(node)}",
            )
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        # rounded up: a tick at or after the time never fires, and one before it (in the same
        # millisecond, with a time written finer than that) still may
        return -((_EPOCH - when) // timedelta(milliseconds=1))

    def template(self, node: Node) -> str | None:
        text = _text(node)
        if text is None:
            hint = (
                " (quote a message that starts with '{')" if isinstance(node, MappingNode) else ""
            )
            self.at(node, f"'message' must be text, got {_describe(node)}{hint}")
            return None
        problems = _template_problems(text)
        for problem in problems:
            self.at(node, problem)
        return None if problems else text

    def notify(self, node: Node) -> list[_Ref] | None:
        items = self.list_of("notify", node, "channel names")
        if items is None:
            return None
        refs: list[_Ref] = []
        for item in items:
            text = _text(item)
            if text is None:
                self.at(
                    item, f"each entry of 'notify' must be a channel name, got {_describe(item)}"
                )
                return None
            refs.append(_Ref(text, item))
        return refs


# ---------------------------------------------------------------- several files as one set


def _merge(sources: list[_Source]) -> RuleSet:
    channels: dict[str, Channel] = {}
    defined_at: dict[str, str] = {}
    for source in sources:
        for ch in source.channels:
            if ch.name in defined_at:
                source.at(
                    ch.node,
                    f"duplicate channel '{ch.name}' (first defined at {defined_at[ch.name]})",
                )
                continue
            defined_at[ch.name] = source.where(ch.node)
            if ch.channel is not None:
                channels[ch.name] = ch.channel

    def known(source: _Source, refs: list[_Ref]) -> bool:
        unknown = [ref for ref in refs if ref.name not in defined_at]
        for ref in unknown:
            source.at(ref.node, _unknown_channel(ref.name, sorted(defined_at)))
        return not unknown and one_topic(source, refs)

    def one_topic(source: _Source, refs: list[_Ref]) -> bool:
        """An alert goes to a Telegram chat once: two channels of one chat in different forum
        topics cannot both be notified (one would be dropped without a word)."""
        first: dict[int, Channel] = {}
        ok = True
        for ref in refs:
            channel = channels.get(ref.name)
            if channel is None or channel.telegram is None:
                continue
            seen = first.setdefault(channel.telegram, channel)
            if seen.topic != channel.topic:
                source.at(
                    ref.node,
                    f"channels '{seen.name}' ({_topic_name(seen.topic)}) and '{channel.name}' "
                    f"({_topic_name(channel.topic)}) are both Telegram chat {channel.telegram}: "
                    "an alert goes to a chat once, in one topic; notify one of them",
                )
                ok = False
        return ok

    ids: dict[str, tuple[_Source, Node]] = {}  # where each id is defined, told only when needed
    rules: list[Rule] = []
    for source in sources:
        defaults = source.defaults.notify
        if defaults is not None:
            known(source, defaults)
        for rule_def in source.rules:
            ok = rule_def.rule is not None
            if rule_def.id is not None and rule_def.id_node is not None:
                if rule_def.id in ids:
                    first, first_node = ids[rule_def.id]
                    source.at(
                        rule_def.id_node,
                        f"duplicate id '{rule_def.id}' "
                        f"(first defined at {first.where(first_node)})",
                    )
                    ok = False
                else:
                    ids[rule_def.id] = (source, rule_def.id_node)
            if rule_def.notify is not None:
                ok = known(source, rule_def.notify) and ok
            if ok and rule_def.rule is not None:
                rules.append(rule_def.rule)

    problems = [p for s in sources for p in sorted(s.problems, key=lambda p: (p.line, p.column))]
    if problems:
        raise RuleFileError(problems)
    return RuleSet(rules=tuple(rules), channels=channels)


# ---------------------------------------------------------------- helpers


def _topic_name(topic: int | None) -> str:
    return "no topic" if topic is None else f"topic {topic}"


def _is_null(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL_TAG


def _text(node: Node) -> str | None:
    """The raw text of a scalar (whatever YAML would have made of it), None for anything else."""
    if isinstance(node, ScalarNode) and node.tag != _NULL_TAG:  # _is_null, inline: hot
        return str(node.value)
    return None


def _describe(node: Node, limit: int | None = None) -> str:
    """``node`` as an error message quotes it; a scalar longer than ``limit`` cut short."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    if _is_null(node):
        return "nothing"
    text = str(node.value)
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"'{text}'"


def _position(node: Node) -> tuple[int, int]:
    return node.start_mark.line, node.start_mark.column


def _unknown_key(name: str, allowed: Sequence[str], where: str) -> str:
    lowered = name.lower()
    if lowered != "secret_env" and any(word in lowered for word in _SECRET_WORDS):
        if where == "channel":
            return (
                f"secrets never live in rule files: remove '{name}' and name an environment "
                "variable that holds it instead, e.g. secret_env: DESK_SECRET"
            )
        return (
            f"secrets never live in rule files: remove '{name}' (the bot token comes from "
            "ALERTBOT_TELEGRAM_TOKEN, a webhook secret from the variable its channel's "
            "secret_env names)"
        )
    if where == "top" and name in RULE_KEYS:
        return f"unknown key '{name}' at the top level (it goes under 'defaults:' or in a rule)"
    key, colon, value = name.partition(":")
    if colon and key in allowed and value[:1].strip():  # {id:r}: YAML reads one key, 'id:r'
        return f"unknown key '{name}': a space is missing after '{key}:'; write '{key}: {value}'"
    close = difflib.get_close_matches(name, allowed, n=1)
    if close:
        return f"unknown key '{name}' (did you mean '{close[0]}'?)"
    return f"unknown key '{name}' (expected one of: {', '.join(allowed)})"


def _unknown_channel(name: str, channels: list[str]) -> str:
    if not channels:
        return f"unknown channel '{name}' in notify (no channels are defined under 'channels:')"
    close = difflib.get_close_matches(name, channels, n=1)
    if close:
        return f"unknown channel '{name}' in notify (did you mean '{close[0]}'?)"
    return f"unknown channel '{name}' in notify (known: {', '.join(channels)})"


def _identity(path: str | os.PathLike[str]) -> object:
    """The file a name stands for: its device and inode (the same through a symbolic or a hard
    link), or its resolved path when it cannot be looked at (the read reports why)."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


_TAG_RE = re.compile(r"<[^<>]*>")


def is_blank(message: str) -> bool:
    """Whether a message shows nothing: white space and HTML tags only (Telegram refuses it
    as empty)."""
    return not _TAG_RE.sub("", message).strip()


def _template_problems(text: str) -> list[str]:
    """What is wrong with a message template; ``{{`` and ``}}`` are literal braces."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(text)
            if name is not None
        ]
    except ValueError as exc:
        reason = str(exc).replace(" in format string", "")
        reason = reason[:1].lower() + reason[1:]
        return [
            f"unbalanced braces in message ({reason}); write '{{{{' or '}}}}' for a literal brace"
        ]
    known = ", ".join(f"{{{p}}}" for p in sorted(PLACEHOLDERS))
    problems: list[str] = []
    if is_blank(text):
        # Telegram refuses an empty message: every alert of the rule would be lost
        problems.append(
            "blank message: every alert would be empty; write some text, or leave 'message' "
            "out for the default"
        )
    for name, spec, conversion in fields:
        if name == "":
            problems.append("empty placeholder '{}' in message; name a value, e.g. '{price}'")
        elif name not in PLACEHOLDERS:
            close = difflib.get_close_matches(name, sorted(PLACEHOLDERS), n=1)
            mean = f"did you mean '{{{close[0]}}}'?; " if close else ""
            problems.append(f"unknown placeholder '{{{name}}}' in message ({mean}known: {known})")
        elif spec or conversion:
            written = (
                f"{{{name}{'!' + conversion if conversion else ''}{':' + spec if spec else ''}}}"
            )
            problems.append(
                f"placeholder '{written}' in message: format specs and conversions are not "
                f"supported, write '{{{name}}}'"
            )
    return problems


def _has_threshold(condition: Condition) -> bool:
    return isinstance(condition, Level | Cross | Move)


def _rearm_refusal(condition: Condition) -> str:
    if isinstance(condition, AllOf | AnyOf):
        why = "an 'all'/'any' rule has several"
    else:
        why = "'breaks 24h ...' has no threshold to move away from"
    return f"rearm needs a single threshold condition; {why}"
