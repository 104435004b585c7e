"""A local fake of the Telegram Bot API, served over real HTTP on 127.0.0.1.

Requests go to ``{api_url}/bot{token}/{method}`` (GET or POST; parameters in the query string, a
form-urlencoded, multipart or JSON body), exactly like ``https://api.telegram.org``. Method names
are case-insensitive, as on Telegram. python-telegram-bot 22 posts every call as
``application/x-www-form-urlencoded`` (``multipart/form-data`` only with files), with string
values as they are and every other value JSON-encoded (``chat_id=42``, ``reply_markup={...}``,
``disable_notification=true``); plain clients often post JSON. The fake decodes all of these into
the same typed ``params``: known integer/boolean parameters become ``int``/``bool``, known
JSON-object parameters (``reply_markup``, ``link_preview_options``, ``allowed_updates``,
``commands``, ...) are JSON-decoded, everything else stays a string.

Answers are ``{"ok": true, "result": ...}`` or ``{"ok": false, "error_code": N, "description":
"...", "parameters": {...}}`` with the HTTP status ``N``; ``parameters`` carries ``retry_after``
(429) or ``migrate_to_chat_id``.

Served methods: getMe, sendMessage (validated like Telegram: chat_id, text 1..4096 characters after
entity parsing and trimming, HTML parse mode or ``entities`` with plain text, inline keyboards),
editMessageText, editMessageReplyMarkup, deleteMessage, getChat, getUpdates (long polling),
deleteWebhook, getWebhookInfo, setMyCommands, getMyCommands, deleteMyCommands,
answerCallbackQuery. Anything else is 404 ``Not Found``; a wrong token is 401 ``Unauthorized``.

Service messages: a group upgraded to a supergroup (``upgrade_group``). The bot's own status in
a chat (``bot_status``): a user blocks or unblocks it, a group removes or adds it, with the
``my_chat_member`` update Telegram sends and the 403 for calls naming the chat while it is out.

Not modelled: MarkdownV2/Markdown syntax (accepted unchecked: ``plain_text`` is the text as sent),
group privacy mode, webhooks (setWebhook), files, media, inline mode.

Telegram's rate limits (``limit_violations``, ``enforce_limits``), with the rule chosen here:

- a private chat (id > 0): a token bucket of ``PRIVATE_BURST`` = 3 messages refilled at
  ``PRIVATE_RATE`` = 1 message/s -- i.e. for any run of k consecutive messages to the chat sent
  within d seconds, k <= 3 + 1/s * d ("about one message per second", short bursts allowed);
- a group, supergroup or channel (id < 0): at most ``GROUP_LIMIT`` = 20 messages in any
  ``GROUP_WINDOW`` = 60 s window;
- overall: at most ``GLOBAL_LIMIT`` = 30 messages in any ``GLOBAL_WINDOW`` = 1 s window.

These are class attributes; a test may override them on an instance.
"""

from __future__ import annotations

import asyncio
import collections
import email.message
import email.parser
import email.policy
import itertools
import json
import math
import re
import time as _time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote

from tests.fakes.waiting import wait_until
from tests.fakes.webhook import Drop, HTTPRequest, HTTPResponse, HTTPServer, Reply

__all__ = [
    "DEFAULT_TOKEN",
    "MAX_MESSAGE_LENGTH",
    "CallbackAnswer",
    "FakeTelegram",
    "HTMLError",
    "Message",
    "ParsedText",
    "Request",
    "parse_html",
]

DEFAULT_TOKEN = "123456:TEST-token"
#: Characters (code points) of a message after entity parsing and trimming.
MAX_MESSAGE_LENGTH = 4096
MAX_CALLBACK_DATA_BYTES = 64
#: answerCallbackQuery's text is "0-200 characters"; a longer one is refused
MAX_CALLBACK_ANSWER = 200

JSON = Any
#: the update kinds getUpdates leaves out unless allowed_updates names them
_NOT_BY_DEFAULT = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
#: the 403 description for a call naming a chat the bot is out of, by the chat's type and
#: the bot's status there (Telegram's wording)
_OUT_OF_CHAT = {
    ("private", "kicked"): "Forbidden: bot was blocked by the user",
    ("group", "kicked"): "Forbidden: bot was kicked from the group chat",
    ("group", "left"): "Forbidden: bot was kicked from the group chat",
    ("supergroup", "kicked"): "Forbidden: bot was kicked from the supergroup chat",
    ("supergroup", "left"): "Forbidden: bot is not a member of the supergroup chat",
    ("channel", "kicked"): "Forbidden: bot was kicked from the channel chat",
    ("channel", "left"): "Forbidden: bot is not a member of the channel chat",
}


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PATH = re.compile(r"/bot(?P<token>[^/]*)/(?P<method>[^/]*)")

# How form/query strings are typed (JSON bodies are typed already; strings in them are coerced too).
_JSON_PARAMS = _words(
    """
    reply_markup entities caption_entities link_preview_options reply_parameters
    allowed_updates commands scope message_ids media
    """
)
_INT_PARAMS = _words(
    """
    chat_id from_chat_id message_id message_thread_id reply_to_message_id offset limit
    user_id cache_time
    """
)
_NUMBER_PARAMS = frozenset({"timeout"})  # whole seconds on Telegram; the fake takes fractions
_BOOL_PARAMS = _words(
    """
    disable_notification protect_content disable_web_page_preview
    allow_sending_without_reply allow_paid_broadcast show_alert drop_pending_updates
    """
)
_INT_TEXT = re.compile(r"-?\d+")
_BUTTON_ACTIONS = _words(
    """
    url callback_data web_app login_url switch_inline_query switch_inline_query_current_chat
    switch_inline_query_chosen_chat copy_text callback_game pay
    """
)
_COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
_BOT_COMMAND = re.compile(r"(?<!\S)/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{1,32})?(?![\w/@])")
_NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the "
    "same as a current content and reply markup of the message"
)
_CONFLICT = (
    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is "
    "running"
)
_ERROR_TEXT = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    409: "Conflict",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None):
        super().__init__(status, description)
        self.status = status
        self.description = description
        self.parameters = parameters

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "ok": False,
            "error_code": self.status,
            "description": self.description,
        }
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad(description: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {description}")


def _too_many(retry_after: int) -> _ApiError:
    return _ApiError(
        429, f"Too Many Requests: retry after {retry_after}", {"retry_after": retry_after}
    )


def _error_text(status: int) -> str:
    return _ERROR_TEXT.get(status, f"Error {status}")


def _front_end_page(status: int) -> bytes:
    """The HTML error page nginx serves for ``status``, as Telegram's front end answers when
    the Bot API behind it is down (not the Bot API's JSON)."""
    title = f"{status} {_error_text(status)}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


def _set_text(message: dict[str, Any], text: str, key: str = "text") -> None:
    """A user's ``text`` in ``message`` (its ``key``: text or caption), its bot commands
    (``/cmd`` or ``/cmd@botname`` at the start or after whitespace) marked with
    ``bot_command`` entities (``entities`` or ``caption_entities``), offsets in UTF-16 units."""
    message[key] = text
    entities = [
        {
            "type": "bot_command",
            "offset": _utf16_len(text[: m.start()]),
            "length": _utf16_len(m.group()),
        }
        for m in _BOT_COMMAND.finditer(text)
    ]
    if entities:
        message["entities" if key == "text" else "caption_entities"] = entities


#: the entity types a sendMessage's ``entities`` may give
_ENTITY_TYPES = _words(
    """
    mention hashtag cashtag bot_command url email phone_number bold italic underline
    strikethrough spoiler blockquote expandable_blockquote code pre text_link text_mention
    custom_emoji
    """
)


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


# --- parameters -----------------------------------------------------------------------------------


def _coerce(name: str, value: Any) -> Any:
    """Type one parameter value like the Bot API reads it (strings from forms and queries)."""
    if not isinstance(value, str):
        return value
    if name in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            what = "reply keyboard markup" if name == "reply_markup" else name
            raise _bad(f"can't parse {what} JSON object") from None
    if name in _INT_PARAMS and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    if name in _NUMBER_PARAMS:
        try:
            number = float(value)
        except ValueError:
            return value
        return int(number) if number.is_integer() else number
    if name in _BOOL_PARAMS and value.lower() in ("true", "false", "1", "0"):
        return value.lower() in ("true", "1")
    return value


def _multipart(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("latin-1")
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    msg = parser.parsebytes(head + body)
    out: dict[str, Any] = {}
    if not isinstance(msg, email.message.EmailMessage) or not msg.is_multipart():
        raise _bad("can't parse multipart/form-data body")
    for part in msg.iter_parts():
        if not isinstance(part, email.message.EmailMessage):
            continue
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        out[name] = data if part.get_filename() is not None else data.decode("utf-8")
    return out


def _parse_params(request: HTTPRequest) -> dict[str, Any]:
    """The call's parameters: query string, then body (form, multipart or JSON), typed.

    Raises ``_ApiError`` (400) for a body that cannot be decoded.
    """
    raw: dict[str, Any] = {}
    try:
        raw.update(parse_qsl(request.query, keep_blank_values=True, errors="strict"))
        content_type = request.headers.get("content-type", "")
        kind = content_type.split(";", 1)[0].strip().lower()
        if request.body:
            if kind == "application/json":
                obj = json.loads(request.body)
                if not isinstance(obj, dict):
                    raise _bad("JSON body must be an object")
                # a \ud800 escape decodes to a lone surrogate: no UTF-8 string, as the bytes
                # of one would not be
                json.dumps(obj, ensure_ascii=False).encode()
                raw.update(obj)
            elif kind == "multipart/form-data":
                raw.update(_multipart(content_type, request.body))
            else:  # application/x-www-form-urlencoded, or no content type
                text = request.body.decode("utf-8")
                raw.update(parse_qsl(text, keep_blank_values=True, errors="strict"))
    except (UnicodeDecodeError, UnicodeEncodeError):
        raise _bad("strings must be encoded in UTF-8") from None
    except ValueError:
        raise _bad("can't parse JSON body") from None
    return {k: _coerce(k, v) for k, v in raw.items() if v is not None}


# --- HTML parse mode ------------------------------------------------------------------------------

_ENTITY_TYPE = {
    "b": "bold",
    "strong": "bold",
    "i": "italic",
    "em": "italic",
    "u": "underline",
    "ins": "underline",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "tg-spoiler": "spoiler",
    "span": "spoiler",
    "code": "code",
    "pre": "pre",
    "a": "text_link",
    "tg-emoji": "custom_emoji",
    "blockquote": "blockquote",
}
_TAGS = frozenset(_ENTITY_TYPE)
_HTML_ENTITY = re.compile(r"&(?:#([0-9]{1,8})|#[xX]([0-9a-fA-F]{1,6})|([a-zA-Z]+));")
_NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_UNQUOTED_VALUE = re.compile(r"[A-Za-z0-9.\-]*")


class HTMLError(ValueError):
    """The text is not valid Telegram HTML; the message is Telegram's wording."""


@dataclass(frozen=True)
class ParsedText:
    """A message text after entity parsing: what the user sees, and the entities."""

    text: str
    entities: list[dict[str, Any]]


@dataclass
class _OpenTag:
    name: str
    attrs: dict[str, str]
    utf16_start: int
    pos: int


def _decode_entity(text: str, i: int) -> tuple[str, int] | None:
    m = _HTML_ENTITY.match(text, i)
    if m is None:
        return None
    if m.group(3) is not None:
        char = _NAMED_ENTITIES.get(m.group(3))
        return None if char is None else (char, m.end())
    code = int(m.group(1)) if m.group(1) is not None else int(m.group(2), 16)
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        return None
    return chr(code), m.end()


def parse_html(text: str, *, strict: bool = True) -> ParsedText:
    """Parse Telegram's HTML parse mode the way Telegram (tdlib) does; raise ``HTMLError``.

    Supported: b/strong, i/em, u/ins, s/strike/del, tg-spoiler, span class="tg-spoiler",
    a href, code (class="language-x" inside pre), pre, blockquote [expandable],
    tg-emoji emoji-id; properly nested and closed (``</>`` closes the innermost tag); entities
    &lt; &gt; &amp; &quot; and numeric ones. A ``<`` that does not start a supported tag is an
    error. The result is trimmed of leading and trailing whitespace.

    ``strict=True`` (the fake's default) also rejects an ``&`` that does not start one of those
    entities; Telegram itself shows such an ``&`` literally, so this only catches missing escaping.
    """
    n = len(text)
    out: list[str] = []
    utf16 = 0
    stack: list[_OpenTag] = []
    entities: list[dict[str, Any]] = []

    def at(pos: int) -> str:
        return f"at byte offset {len(text[:pos].encode())}"

    def emit(chunk: str) -> None:
        nonlocal utf16
        out.append(chunk)
        utf16 += _utf16_len(chunk)

    i = 0
    while i < n:
        c = text[i]
        if c == "&":
            decoded = _decode_entity(text, i)
            if decoded is not None:
                emit(decoded[0])
                i = decoded[1]
                continue
            if strict:
                raise HTMLError(
                    f'Unescaped "&" {at(i)} (the fake\'s strict_html check: Telegram would show '
                    "it as is; write &amp;)"
                )
        if c != "<":
            emit(c)
            i += 1
            continue
        start = i
        i += 1
        if i < n and text[i] == "/":  # an end tag
            i += 1
            name_start = i
            while i < n and not text[i].isspace() and text[i] != ">":
                i += 1
            end_name = text[name_start:i].lower()
            while i < n and text[i].isspace():
                i += 1
            if i >= n or text[i] != ">":
                raise HTMLError(f"Unclosed end tag {at(start)}")
            i += 1
            if not stack:
                raise HTMLError(f"Unexpected end tag {at(start)}")
            tag = stack.pop()
            if end_name and end_name != tag.name:
                raise HTMLError(
                    f'Unmatched end tag {at(start)}, expected "</{tag.name}>", '
                    f'found "</{end_name}>"'
                )
            if utf16 > tag.utf16_start:
                entities.append(_entity(tag, utf16, stack))
            continue
        name_start = i
        while i < n and not text[i].isspace() and text[i] != ">":
            i += 1
        if i >= n:
            raise HTMLError(f"Unclosed start tag {at(start)}")
        name = text[name_start:i].lower()
        if name not in _TAGS:
            raise HTMLError(f'Unsupported start tag "{name}" {at(start)}')
        attrs: dict[str, str] = {}
        while True:
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise HTMLError(f'Unclosed start tag "{name}" {at(start)}')
            if text[i] == ">":
                i += 1
                break
            attr_start = i
            while i < n and not text[i].isspace() and text[i] not in "=>/\"'":
                i += 1
            attr = text[attr_start:i].lower()
            if not attr:
                raise HTMLError(f'Empty attribute name in the tag "{name}" {at(start)}')
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise HTMLError(f'Unclosed start tag "{name}" {at(start)}')
            if text[i] != "=":
                attrs[attr] = ""
                continue
            i += 1
            while i < n and text[i].isspace():
                i += 1
            if i >= n:
                raise HTMLError(f'Unclosed start tag "{name}" {at(start)}')
            if text[i] in "\"'":
                quote = text[i]
                i += 1
                value: list[str] = []
                while i < n and text[i] != quote:
                    decoded = _decode_entity(text, i) if text[i] == "&" else None
                    if decoded is not None:
                        value.append(decoded[0])
                        i = decoded[1]
                    else:
                        value.append(text[i])
                        i += 1
                if i >= n:
                    raise HTMLError(f"Unclosed start tag {at(start)}")
                i += 1
                attrs[attr] = "".join(value)
            else:
                m = _UNQUOTED_VALUE.match(text, i)
                assert m is not None
                i = m.end()
                if i < n and not text[i].isspace() and text[i] != ">":
                    raise HTMLError(f"Unexpected end of name token {at(i)}")
                attrs[attr] = m.group().lower()
        if name == "span" and attrs.get("class") != "tg-spoiler":
            raise HTMLError(f'Tag "span" must have class "tg-spoiler" {at(start)}')
        if name == "tg-emoji" and not _INT_TEXT.fullmatch(attrs.get("emoji-id", "")):
            raise HTMLError("Invalid custom emoji identifier specified")
        stack.append(_OpenTag(name, attrs, utf16, start))
    if stack:
        raise HTMLError(f'Can\'t find end tag corresponding to start tag "{stack[-1].name}"')
    return _trimmed("".join(out), entities)


def _entity(tag: _OpenTag, utf16_end: int, outer: list[_OpenTag]) -> dict[str, Any]:
    kind = _ENTITY_TYPE[tag.name]
    entity: dict[str, Any] = {
        "type": kind,
        "offset": tag.utf16_start,
        "length": utf16_end - tag.utf16_start,
    }
    if kind == "text_link":
        entity["url"] = tag.attrs.get("href", "")
    elif kind == "custom_emoji":
        entity["custom_emoji_id"] = tag.attrs["emoji-id"]
    elif kind == "blockquote" and "expandable" in tag.attrs:
        entity["type"] = "expandable_blockquote"
    elif kind == "code" and outer and outer[-1].name == "pre":
        language = tag.attrs.get("class", "")
        if language.startswith("language-"):
            entity["type"] = "pre"
            entity["language"] = language.removeprefix("language-")
    return entity


def _trimmed(text: str, entities: list[dict[str, Any]]) -> ParsedText:
    stripped = text.strip()
    shift = _utf16_len(text[: len(text) - len(text.lstrip())])
    size = _utf16_len(stripped)
    kept: list[dict[str, Any]] = []
    for e in entities:
        begin = max(e["offset"] - shift, 0)
        end = min(e["offset"] + e["length"] - shift, size)
        if end > begin:
            kept.append({**e, "offset": begin, "length": end - begin})
    kept.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText(stripped, kept)


# --- records --------------------------------------------------------------------------------------


@dataclass(eq=False)
class Request:
    """One HTTP request to the fake, answered or not."""

    method: str  # the Bot API name ("sendMessage"); as sent when unknown; "" for a bad path
    params: dict[str, Any]  # typed (see the module docstring)
    time: float  # loop time received
    http_method: str = "POST"
    status: int | None = None  # HTTP status; None: not answered (down(None), client gone)
    response: dict[str, Any] | None = None  # the JSON answered

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(eq=False)
class Message:
    """A message the bot sent with a successful sendMessage (edits update it in place)."""

    chat_id: int
    text: str  # as sent, markup included (after the last edit)
    parse_mode: str | None
    reply_markup: dict[str, Any] | None
    message_id: int
    time: float  # loop time of the sendMessage
    plain_text: str = ""  # what the user sees: tags removed, entities decoded, trimmed
    entities: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # every sendMessage parameter
    date: int = 0  # unix time
    edits: int = 0
    edit_date: int | None = None
    deleted: bool = False
    #: seconds the answer to its sendMessage was held back (``answer_late``): 0, on time
    answered_late: float = 0.0

    def shown_as(self, kind: str) -> list[str]:
        """The pieces of the text the user sees shown as ``kind`` entities ("code", "bold"),
        in order."""
        units = self.plain_text.encode("utf-16-le")
        return [
            units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
            for e in self.entities
            if e["type"] == kind
        ]


@dataclass(eq=False)
class CallbackAnswer:
    """An answerCallbackQuery call that was accepted."""

    callback_query_id: str
    data: str  # the pressed button's callback_data
    chat_id: int
    message_id: int
    text: str | None
    show_alert: bool
    url: str | None
    time: float


@dataclass
class _Failure:
    remaining: int
    status: int
    description: str
    retry_after: int | None
    chat_id: int | None
    method: str | None  # lower-case; None: any


@dataclass
class _Callback:
    data: str
    chat_id: int
    message_id: int


# --- rate limits ----------------------------------------------------------------------------------


def _bucket_wait(times: list[float], now: float, burst: int, rate: float) -> float:
    """Seconds until one more message at ``now`` fits a bucket of ``burst`` refilled at ``rate``."""
    n = len(times)
    return max((0.0, *(((n - i + 1) - burst) / rate - (now - times[i]) for i in range(n))))


def _window_wait(times: list[float], now: float, limit: int, window: float) -> float:
    """Seconds until one more message at ``now`` keeps <= ``limit`` in every ``window``."""
    recent = [t for t in times if t > now - window]
    if len(recent) < limit:
        return 0.0
    return recent[-limit] + window - now


# --- the fake -------------------------------------------------------------------------------------


class FakeTelegram(HTTPServer):
    """Fake ``api.telegram.org`` for one bot; ``async with FakeTelegram() as tg:``.

    Point python-telegram-bot at it with ``Bot(tg.token, base_url=f"{tg.api_url}/bot")``.
    A sendMessage is applied when it is received: ``delay`` (every answer) and ``answer_late``
    (one method's) only make the answer late, so a client that times out has still delivered
    the message (as on Telegram).
    """

    PRIVATE_BURST = 3
    PRIVATE_RATE = 1.0  # messages per second
    GROUP_LIMIT = 20
    GROUP_WINDOW = 60.0
    GLOBAL_LIMIT = 30
    GLOBAL_WINDOW = 1.0
    DEFAULT_GROUP_USER_ID = 777_000_001  # who speaks in a group when user_says has no user_id

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "alertbot_test_bot",
        enforce_limits: bool = False,
        strict_html: bool = True,
    ) -> None:
        """``enforce_limits``: a sendMessage over the rate limits gets 429 with ``retry_after``.
        ``strict_html``: also reject a bare ``&`` in HTML (see ``parse_html``).
        """
        super().__init__()
        head = token.split(":", 1)[0]
        if not head.isdigit():
            raise ValueError(f"a bot token starts with the bot's numeric id: {token!r}")
        self.token = token
        self.bot_username = bot_username
        self.enforce_limits = enforce_limits
        self.strict_html = strict_html
        self.bot_id = int(head)
        self.requests: list[Request] = []
        self.messages: list[Message] = []
        self.updates: list[dict[str, Any]] = []  # every update ever queued, in order
        self.answered_callbacks: list[CallbackAnswer] = []
        self.scoped_commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._pending: list[dict[str, Any]] = []
        self._allowed_updates: set[str] | None = None
        self._wakeup = asyncio.Event()
        self._poll_generation = 0
        self._next_update_id = 1001
        self._message_ids: dict[int, itertools.count[int]] = {}
        self._bot_messages: dict[tuple[int, int], Message] = {}
        self._user_messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._callbacks: dict[str, _Callback] = {}
        self._callback_ids = itertools.count(4_200_000_000_000_000_001)
        self._chats: dict[int, dict[str, Any]] = {}
        self._usernames: dict[str, int] = {}
        self._failures: list[_Failure] = []
        self._failed_chats: dict[int, tuple[int, str]] = {}
        #: forum topics that take no messages: (chat, topic) -> Telegram's refusal
        self._gone_topics: dict[tuple[int, int], str] = {}
        self._migrated: dict[int, int] = {}
        self._bot_statuses: dict[int, str] = {}  # the bot's status per chat; none: "member"
        self._down: int | None = None
        self._down_page = False
        self._down_method: str | None = None  # lower case; None: every method
        self._hang = False
        self._late: tuple[float, str] = (0.0, "sendmessage")
        self._methods: dict[str, tuple[str, Callable[[Request], Awaitable[JSON]]]] = {
            name.lower(): (name, handler)
            for name, handler in (
                ("getMe", self._get_me),
                ("sendMessage", self._send_message),
                ("editMessageText", self._edit_message_text),
                ("editMessageReplyMarkup", self._edit_message_reply_markup),
                ("deleteMessage", self._delete_message),
                ("getChat", self._get_chat),
                ("getUpdates", self._get_updates),
                ("deleteWebhook", self._delete_webhook),
                ("getWebhookInfo", self._get_webhook_info),
                ("setMyCommands", self._set_my_commands),
                ("getMyCommands", self._get_my_commands),
                ("deleteMyCommands", self._delete_my_commands),
                ("answerCallbackQuery", self._answer_callback_query),
            )
        }

    # --- addresses and queries

    @property
    def api_url(self) -> str:
        """The API root, ``http://127.0.0.1:PORT``; clients append ``/bot{token}/{method}``."""
        return self.base_url

    @property
    def bot_user(self) -> dict[str, Any]:
        """The bot as getMe returns it."""
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "alertbot",
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    @property
    def commands(self) -> list[dict[str, Any]]:
        """What setMyCommands set for the default scope and no language."""
        return list(self.scoped_commands.get(self._commands_key(None, None), []))

    def messages_to(self, chat_id: int) -> list[Message]:
        """The delivered messages to ``chat_id``, in order."""
        return [m for m in self.messages if m.chat_id == chat_id]

    def calls(self, method: str) -> list[Request]:
        """The requests for ``method`` (case-insensitive), in order."""
        low = method.lower()
        return [r for r in self.requests if r.method.lower() == low]

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued and not yet confirmed by a getUpdates offset."""
        return list(self._pending)

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Poll ``predicate`` until true; TimeoutError after ``timeout`` seconds."""
        await wait_until(predicate, timeout, seen=self._seen)

    def _seen(self) -> str:
        recent = [(r.method, r.status) for r in self.requests[-10:]]
        return f"{len(self.messages)} messages; last requests: {recent}"

    async def wait_for_messages(self, n: int, timeout: float = 5.0) -> list[Message]:
        """Until at least ``n`` messages were delivered; returns them all."""
        await self.wait_for(lambda: len(self.messages) >= n, timeout)
        return list(self.messages)

    # --- fault injection

    def fail_next(
        self,
        n: int,
        *,
        status: int = 500,
        description: str | None = None,
        retry_after: int | None = None,
        chat_id: int | None = None,
        method: str | None = "sendMessage",
    ) -> None:
        """The next ``n`` calls of ``method`` (None: any method; for ``chat_id`` only, if given)
        fail with ``status``. Calls queue up: a request takes the oldest rule it matches.

        ``description`` defaults to Telegram's wording for the status ("Internal Server Error",
        "Forbidden", ..., 429: "Too Many Requests: retry after N"). A 429 always carries
        ``parameters.retry_after`` (default 1); other statuses take no ``retry_after``.
        """
        if status == 429:
            retry_after = 1 if retry_after is None else retry_after
        elif retry_after is not None:
            raise ValueError("retry_after goes with status 429 only")
        if description is None:
            description = (
                f"Too Many Requests: retry after {retry_after}"
                if status == 429
                else _error_text(status)
            )
        low = None if method is None else method.lower()
        self._failures.append(_Failure(n, status, description, retry_after, chat_id, low))

    def clear_failures(self) -> None:
        """Forget the failures of :meth:`fail_next` not used yet."""
        self._failures.clear()

    def fail_chat(
        self,
        chat_id: int,
        status: int = 403,
        description: str = "Forbidden: bot was blocked by the user",
    ) -> None:
        """Every call naming ``chat_id`` fails with ``status`` until ``recover()``.

        Other usual ones: ``(400, "Bad Request: chat not found")``,
        ``(403, "Forbidden: bot was kicked from the supergroup chat")``.
        """
        self._failed_chats[chat_id] = (status, description)

    def block(
        self, chat_id: int, description: str = "Forbidden: bot was blocked by the user"
    ) -> None:
        """The user of ``chat_id`` blocks the bot (a group removes it: "Forbidden: bot was
        kicked from the group chat"): every call naming the chat gets 403 until
        :meth:`unblock` (or ``recover()``). The user can still send it commands here, as one
        does on Telegram right after unblocking. The bot's status there is "kicked" from then
        on (the old status of a later ``bot_status``), with no ``my_chat_member`` update
        (``bot_status`` sends one)."""
        self.fail_chat(chat_id, 403, description)
        self._bot_statuses[chat_id] = "kicked"

    def unblock(self, chat_id: int) -> None:
        """Undo :meth:`block` (or ``fail_chat``) for ``chat_id`` alone."""
        self._failed_chats.pop(chat_id, None)
        self._bot_statuses.pop(chat_id, None)

    def close_topic(
        self, chat_id: int, topic: int, description: str = "message thread not found"
    ) -> None:
        """Forum topic ``topic`` of ``chat_id`` takes no more messages: a sendMessage with it
        as ``message_thread_id`` (0: none, the General topic) gets 400 ``Bad Request:
        <description>`` (a deleted topic's wording by default; a closed one's is
        ``TOPIC_CLOSED``)."""
        self._gone_topics[(chat_id, topic)] = description

    def reopen_topic(self, chat_id: int, topic: int) -> None:
        """Forum topic ``topic`` of ``chat_id`` takes messages again (see close_topic)."""
        self._gone_topics.pop((chat_id, topic), None)

    def migrate_chat(self, chat_id: int, new_chat_id: int) -> None:
        """Calls naming ``chat_id`` get 400 with ``parameters.migrate_to_chat_id`` (a group
        upgraded to a supergroup) until ``recover()``."""
        self._migrated[chat_id] = new_chat_id

    def upgrade_group(self, chat_id: int, new_chat_id: int) -> tuple[int, int]:
        """The group ``chat_id`` becomes the supergroup ``new_chat_id``, as on Telegram: calls
        naming the old id get 400 with ``migrate_to_chat_id`` (``migrate_chat``), and two
        service messages are queued, ``migrate_to_chat_id`` in the old group, then
        ``migrate_from_chat_id`` in the supergroup. Returns their update_ids."""
        self.migrate_chat(chat_id, new_chat_id)
        self._chats.setdefault(chat_id, {})["type"] = "group"
        self._chats.setdefault(new_chat_id, {})["type"] = "supergroup"
        to = self._service(chat_id, {"migrate_to_chat_id": new_chat_id})
        return to, self._service(new_chat_id, {"migrate_from_chat_id": chat_id})

    def bot_status(
        self,
        chat_id: int,
        status: str,
        *,
        chat_type: str | None = None,
        user_id: int | None = None,
    ) -> int:
        """The bot's own status in ``chat_id`` becomes ``status``, as on Telegram: in a private
        chat the user blocks it ("kicked") or unblocks it ("member"); a group removes it ("left",
        or "kicked": banned), adds it ("member") or makes it an admin ("administrator").

        A ``my_chat_member`` update is queued (ChatMemberUpdated: the chat, ``from`` the user
        who did it, ``date``, ``old_chat_member`` and ``new_chat_member``, each a ChatMember of
        the bot with the fields its status has in the Bot API). While the bot is out, calls
        naming the chat get 403 with Telegram's description for the chat's type (``block``);
        back, they work again. Returns the update_id. The bot's status is "member" in a chat
        this was never called for.
        """
        if chat_type is not None:
            self._chats.setdefault(chat_id, {})["type"] = chat_type
        kind = self._chat_type(chat_id)
        allowed = (
            ("member", "kicked")
            if kind == "private"
            else ("member", "administrator", "left", "kicked")
        )
        if status not in allowed:
            raise ValueError(f"the bot cannot become {status!r} in a {kind} chat")
        old = self._bot_statuses.get(chat_id, "member")
        self._bot_statuses[chat_id] = status
        if status in ("left", "kicked"):
            self.fail_chat(chat_id, 403, _OUT_OF_CHAT[(kind, status)])
        else:
            self._failed_chats.pop(chat_id, None)
        if user_id is None:
            user_id = chat_id if kind == "private" else self.DEFAULT_GROUP_USER_ID
        username = self._chats.get(chat_id, {}).get("username", "trader")
        return self._queue(
            {
                "my_chat_member": {
                    "chat": self._chat_json(chat_id),
                    "from": self._user(user_id, username),
                    "date": int(_time.time()),
                    "old_chat_member": self._bot_member(old),
                    "new_chat_member": self._bot_member(status),
                }
            }
        )

    def _bot_member(self, status: str) -> dict[str, Any]:
        """The bot as a ChatMember of ``status`` (ChatMemberMember, -Administrator, -Left,
        -Banned), with the fields the Bot API requires of each."""
        user = {k: self.bot_user[k] for k in ("id", "is_bot", "first_name", "username")}
        member: dict[str, Any] = {"user": user, "status": status}
        if status == "kicked":
            member["until_date"] = 0  # banned for ever
        elif status == "administrator":
            member.update(
                can_be_edited=False,
                is_anonymous=False,
                can_manage_chat=True,
                can_delete_messages=True,
                can_manage_video_chats=True,
                can_restrict_members=True,
                can_promote_members=False,
                can_change_info=True,
                can_invite_users=True,
                can_post_stories=False,
                can_edit_stories=False,
                can_delete_stories=False,
                can_pin_messages=True,
            )
        return member

    def _service(self, chat_id: int, fields: dict[str, Any]) -> int:
        """Queue a service ``message`` update in ``chat_id`` (no text; ``fields`` say what)."""
        message = {
            "message_id": self._next_message_id(chat_id),
            "from": self._user(self.DEFAULT_GROUP_USER_ID, "trader"),
            "chat": self._chat_json(chat_id),
            "date": int(_time.time()),
            **fields,
        }
        return self._queue({"message": message})

    def down(
        self, status: int | None = 502, *, page: bool = False, method: str | None = None
    ) -> None:
        """Every call fails with ``status``; ``None``: requests are read and never answered.
        ``page``: the answer is a front end's HTML error page (``text/html``), as when Telegram's
        servers themselves are down, not the Bot API's JSON error. ``method``: only the calls of
        that method (case-insensitive) fail; the others are served."""
        self._down = status
        self._down_page = page and status is not None
        self._down_method = None if method is None else method.lower()
        self._hang = status is None

    def answer_late(self, seconds: float, *, method: str = "sendMessage") -> None:
        """From now on the calls of ``method`` (case-insensitive) that succeed are answered
        ``seconds`` late: applied on receipt (a message is delivered, with ``answered_late``
        set), the answer written after that long, as when Telegram took a message and its
        answer outlived the client's timeout. 0 ends it; a call received before goes on as it
        began. Not undone by ``recover()``."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        self._late = (seconds, method.lower())

    def recover(self) -> None:
        """Undo ``down()``, ``fail_chat()`` and ``migrate_chat()``, and forget the bot's statuses
        (``bot_status``; ``fail_next`` rules stay)."""
        self._down = None
        self._down_page = False
        self._down_method = None
        self._hang = False
        self._failed_chats.clear()
        self._bot_statuses.clear()
        self._migrated.clear()

    # --- users

    def user_says(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int | None = None,
        chat_type: str | None = None,
        username: str = "trader",
        photo: bool = False,
        reply_to: int | None = None,
        topic: int | None = None,
        topic_name: str | None = None,
    ) -> int:
        """Queue a ``message`` update from a user; returns its update_id.

        Bot commands (``/cmd`` or ``/cmd@botname`` at the start or after whitespace) are marked
        with ``bot_command`` entities, offsets in UTF-16 units, as Telegram does. Defaults: the
        user is ``chat_id`` in a private chat, else ``DEFAULT_GROUP_USER_ID``; the chat type is
        "private" for a positive id, else "supergroup". ``photo``: a picture with ``text`` as
        its caption (``caption`` and ``caption_entities``, no ``text``). ``reply_to``: the id of
        the bot's message in that chat the user replies to (``reply_to_message``). ``topic``:
        sent in that forum topic of a supergroup (``message_thread_id`` and
        ``is_topic_message``, the chat ``is_forum``), as Telegram marks it, and, unless it
        replies to the bot, replying to the topic's creation (``forum_topic_created``, named
        ``topic_name``, "Topic N" by default), as every message in a topic does.
        """
        if user_id is None:
            user_id = chat_id if chat_id > 0 else self.DEFAULT_GROUP_USER_ID
        chat = self._chats.setdefault(chat_id, {})
        if chat_type is not None:
            chat["type"] = chat_type
        if self._chat_type(chat_id) == "private":
            chat.setdefault("username", username)
        message_id = self._next_message_id(chat_id)
        message: dict[str, Any] = {
            "message_id": message_id,
            "from": self._user(user_id, username),
            "chat": self._chat_json(chat_id),
            "date": int(_time.time()),
        }
        if photo:
            message["photo"] = [
                {"file_id": f"photo-{message_id}", "file_unique_id": f"p{message_id}",
                 "width": 320, "height": 240, "file_size": 12_345}
            ]  # fmt: skip
        _set_text(message, text, "caption" if photo else "text")
        if reply_to is not None:
            replied = self._bot_messages.get((chat_id, reply_to))
            if replied is None or replied.deleted:
                raise ValueError(f"no live bot message {reply_to} in chat {chat_id}")
            message["reply_to_message"] = self._message_json(replied)
        if topic is not None:
            message["chat"]["is_forum"] = True
            message["message_thread_id"] = topic
            message["is_topic_message"] = True
            if reply_to is None:
                name = topic_name or f"Topic {topic}"
                message["reply_to_message"] = self._topic_message(
                    chat_id, topic, {"forum_topic_created": {"name": name, "icon_color": 0}}
                )
        self._user_messages[(chat_id, message_id)] = message
        return self._queue({"message": message})

    def _topic_message(self, chat_id: int, topic: int, service: dict[str, Any]) -> dict[str, Any]:
        """A service message of forum topic ``topic`` (its creation has the topic's id)."""
        return {
            "message_id": topic,
            "from": self._user(self.DEFAULT_GROUP_USER_ID, "trader"),
            "chat": {**self._chat_json(chat_id), "is_forum": True},
            "date": int(_time.time()),
            "message_thread_id": topic,
            "is_topic_message": True,
            **service,
        }

    def topic_renamed(self, chat_id: int, topic: int, name: str) -> int:
        """Queue the service message of forum topic ``topic`` renamed ``name``
        (``forum_topic_edited``, in the topic, replying to its creation); its update_id."""
        message = self._topic_message(chat_id, topic, {"forum_topic_edited": {"name": name}})
        message["message_id"] = self._next_message_id(chat_id)
        message["reply_to_message"] = self._topic_message(
            chat_id, topic, {"forum_topic_created": {"name": f"Topic {topic}", "icon_color": 0}}
        )
        return self._queue({"message": message})

    def user_edits(self, chat_id: int, message_id: int, text: str) -> int:
        """Queue an ``edited_message`` update: the user changed the text of their message
        ``message_id`` (entities marked again, ``edit_date`` set); returns its update_id."""
        original = self._user_messages.get((chat_id, message_id))
        if original is None:
            raise ValueError(f"no message {message_id} of the user in chat {chat_id}")
        key = "caption" if "photo" in original else "text"
        message = {k: v for k, v in original.items() if not k.startswith((key, "entities"))}
        message["edit_date"] = max(int(_time.time()), message["date"])
        _set_text(message, text, key)
        self._user_messages[(chat_id, message_id)] = message
        return self._queue({"edited_message": message})

    def user_presses(
        self, chat_id: int, message_id: int, data: str, *, user_id: int | None = None
    ) -> int:
        """Queue a ``callback_query`` update: the user pressed the inline button with
        ``callback_data == data`` on the bot's message; returns its update_id.

        The message must be the bot's, not deleted, and currently show such a button
        (otherwise ValueError: a real user could not press it).
        """
        msg = self._bot_messages.get((chat_id, message_id))
        if msg is None or msg.deleted:
            raise ValueError(f"no live bot message {message_id} in chat {chat_id}")
        buttons = (msg.reply_markup or {}).get("inline_keyboard", [])
        if not any(b.get("callback_data") == data for row in buttons for b in row):
            raise ValueError(f"message {message_id} has no button with callback_data {data!r}")
        if user_id is None:
            user_id = chat_id if chat_id > 0 else self.DEFAULT_GROUP_USER_ID
        query_id = str(next(self._callback_ids))
        self._callbacks[query_id] = _Callback(data, chat_id, message_id)
        username = self._chats.get(chat_id, {}).get("username", "trader")
        query = {
            "id": query_id,
            "from": self._user(user_id, username),
            "message": self._message_json(msg),
            "chat_instance": str(abs(chat_id) * 7 + 1),
            "data": data,
        }
        return self._queue({"callback_query": query})

    def _queue(self, body: dict[str, Any]) -> int:
        update_id = self._next_update_id
        self._next_update_id += 1
        update = {"update_id": update_id, **body}
        self.updates.append(update)
        self._pending.append(update)
        self._wake()
        return update_id

    def _wake(self) -> None:
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # --- limits

    def limit_violations(self) -> list[str]:
        """Where the delivered messages broke the rate limits (see the module docstring):
        one line per chat and rule, plus one for the global limit; empty when clean."""
        out: list[str] = []
        by_chat: dict[int, list[float]] = collections.defaultdict(list)
        for m in self.messages:
            by_chat[m.chat_id].append(m.time)
        for chat_id, times in by_chat.items():
            if chat_id > 0:
                bad = [
                    j for j in range(len(times)) if self._bucket_wait(times[:j], times[j]) > 1e-9
                ]
                rule = f"at most {self.PRIVATE_BURST} at once, then {self.PRIVATE_RATE:g}/s"
            else:
                bad = [
                    j
                    for j in range(len(times))
                    if _window_wait(times[:j], times[j], self.GROUP_LIMIT, self.GROUP_WINDOW) > 0
                ]
                rule = f"at most {self.GROUP_LIMIT} per {self.GROUP_WINDOW:g} s"
            if bad:
                kind = "private chat" if chat_id > 0 else "group chat"
                j = bad[0]
                out.append(
                    f"{kind} {chat_id}: {len(bad)} of {len(times)} messages over the limit "
                    f"({rule}); first: message #{j + 1}, {times[j] - times[0]:.3f} s after the "
                    "first"
                )
        all_times = sorted(m.time for m in self.messages)
        bad = [
            j
            for j in range(len(all_times))
            if _window_wait(all_times[:j], all_times[j], self.GLOBAL_LIMIT, self.GLOBAL_WINDOW) > 0
        ]
        if bad:
            out.append(
                f"overall: {len(bad)} of {len(all_times)} messages over the limit (at most "
                f"{self.GLOBAL_LIMIT} per {self.GLOBAL_WINDOW:g} s)"
            )
        return out

    def _bucket_wait(self, times: list[float], now: float) -> float:
        return _bucket_wait(times, now, self.PRIVATE_BURST, self.PRIVATE_RATE)

    def _limit_wait(self, chat_id: int, now: float) -> float:
        chat_times = [m.time for m in self.messages if m.chat_id == chat_id]
        if chat_id > 0:
            wait = self._bucket_wait(chat_times, now)
        else:
            wait = _window_wait(chat_times, now, self.GROUP_LIMIT, self.GROUP_WINDOW)
        all_times = [m.time for m in self.messages]
        return max(wait, _window_wait(all_times, now, self.GLOBAL_LIMIT, self.GLOBAL_WINDOW))

    # --- serving

    async def handle(self, request: HTTPRequest) -> Reply:
        m = _PATH.fullmatch(unquote(request.path))
        entry = self._methods.get(m["method"].lower()) if m else None
        name = entry[0] if entry else (m["method"] if m else "")
        record = Request(method=name, params={}, time=request.time, http_method=request.method)
        self.requests.append(record)
        try:
            record.params = _parse_params(request)
            parse_error = None
        except _ApiError as e:
            parse_error = e
        down = self._down_method in (None, name.lower())
        if self._hang and down:
            return Drop.HANG
        if self._down is not None and self._down_page and down:
            record.status = self._down
            return HTTPResponse(self._down, _front_end_page(self._down), "text/html")
        try:
            if self._down is not None and down:
                raise _ApiError(self._down, _error_text(self._down))
            if m is None or entry is None:
                raise _ApiError(404, "Not Found")
            if m["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            if parse_error is not None:
                raise parse_error
            self._injected(record)
            result = await entry[1](record)
            status, body = 200, {"ok": True, "result": result}
        except _ApiError as e:
            status, body = e.status, e.body()
        record.status = status
        record.response = body
        late, late_method = self._late
        if late > 0 and status == 200 and name.lower() == late_method:
            if name.lower() == "sendmessage":
                sent = body["result"]
                self._bot_messages[(sent["chat"]["id"], sent["message_id"])].answered_late = late
            await asyncio.sleep(late)  # cancelled if the client gives up first
        try:
            payload = json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:  # a lone surrogate (a test's): sent as JSON's \u escape
            payload = json.dumps(body).encode()
        return HTTPResponse(status, payload, "application/json")

    def _injected(self, record: Request) -> None:
        """Raise the failure a control set up for this call, if any."""
        chat_id = self._resolve(record.params.get("chat_id"))
        if chat_id is not None:
            if chat_id in self._failed_chats:
                status, description = self._failed_chats[chat_id]
                raise _ApiError(status, description)
            if chat_id in self._migrated:
                raise _ApiError(
                    400,
                    "Bad Request: group chat was upgraded to a supergroup chat",
                    {"migrate_to_chat_id": self._migrated[chat_id]},
                )
        low = record.method.lower()
        for rule in self._failures:
            if rule.method not in (None, low):
                continue
            if rule.chat_id is not None and rule.chat_id != chat_id:
                continue
            rule.remaining -= 1
            if rule.remaining <= 0:
                self._failures.remove(rule)
            params = {"retry_after": rule.retry_after} if rule.retry_after is not None else None
            raise _ApiError(rule.status, rule.description, params)

    # --- chats and objects

    def _resolve(self, value: Any) -> int | None:
        """A chat_id parameter as an int (``@name`` gets a stable channel id); None if unusable."""
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, str) and value.startswith("@") and len(value) > 1:
            name = value[1:].lower()
            if name not in self._usernames:
                chat_id = -1_000_000_000_000 - 1001 - len(self._usernames)
                self._usernames[name] = chat_id
                self._chats[chat_id] = {"type": "channel", "username": value[1:]}
            return self._usernames[name]
        return None

    def _chat_id(self, params: dict[str, Any]) -> int:
        value = params.get("chat_id")
        if value is None or value == "":
            raise _bad("chat_id is empty")
        chat_id = self._resolve(value)
        if chat_id is None or chat_id == 0:
            raise _bad("chat not found")
        return chat_id

    def _chat_type(self, chat_id: int) -> str:
        stored = self._chats.get(chat_id, {}).get("type")
        if isinstance(stored, str):
            return stored
        return "private" if chat_id > 0 else "supergroup"

    def _chat_json(self, chat_id: int) -> dict[str, Any]:
        kind = self._chat_type(chat_id)
        chat: dict[str, Any] = {"id": chat_id, "type": kind}
        info = self._chats.get(chat_id, {})
        if kind == "private":
            chat["first_name"] = "Trader"
        else:
            chat["title"] = f"alertbot test {kind}"
        if "username" in info:
            chat["username"] = info["username"]
        return chat

    @staticmethod
    def _user(user_id: int, username: str) -> dict[str, Any]:
        return {
            "id": user_id,
            "is_bot": False,
            "first_name": "Trader",
            "username": username,
            "language_code": "en",
        }

    def _next_message_id(self, chat_id: int) -> int:
        return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    def _message_json(self, msg: Message) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": msg.message_id,
            "from": self.bot_user,
            "chat": self._chat_json(msg.chat_id),
            "date": msg.date,
            "text": msg.plain_text,
        }
        if msg.edit_date is not None:
            out["edit_date"] = msg.edit_date
        if msg.entities:
            out["entities"] = msg.entities
        if msg.reply_markup is not None and "inline_keyboard" in msg.reply_markup:
            out["reply_markup"] = msg.reply_markup
        return out

    # --- validation

    def _text(self, params: dict[str, Any], too_long: str) -> tuple[str, str | None, ParsedText]:
        text = params.get("text")
        if text is None or text == "":
            raise _bad("message text is empty")
        if not isinstance(text, str):
            text = json.dumps(text)
        parse_mode = params.get("parse_mode")
        if parse_mode == "":
            parse_mode = None
        modes = ("html", "markdown", "markdownv2")
        if parse_mode is not None and (
            not isinstance(parse_mode, str) or parse_mode.lower() not in modes
        ):
            raise _bad("unsupported parse_mode")
        if parse_mode is not None and parse_mode.lower() == "html":
            try:
                parsed = parse_html(text, strict=self.strict_html)
            except HTMLError as e:
                raise _bad(f"can't parse entities: {e}") from None
        else:
            parsed = _trimmed(text, self._entities(params.get("entities"), text))
        if not parsed.text:
            raise _bad("message text is empty")
        if len(parsed.text) > MAX_MESSAGE_LENGTH:
            raise _bad(too_long)
        return text, parse_mode, parsed

    @staticmethod
    def _entities(value: Any, text: str) -> list[dict[str, Any]]:
        """The ``entities`` given with a text sent without a parse mode (Telegram ignores them
        with one): each needs a known type and its offset and length (UTF-16 units) within
        the text."""
        if value is None:
            return []
        if not isinstance(value, list):
            raise _bad("can't parse entities JSON object")
        size = _utf16_len(text)
        for e in value:
            if not isinstance(e, dict) or e.get("type") not in _ENTITY_TYPES:
                raise _bad("can't parse entities: unsupported entity type")
            offset, length = e.get("offset"), e.get("length")
            if not isinstance(offset, int) or not isinstance(length, int):
                raise _bad("can't parse entities: offset and length must be integers")
            if offset < 0 or length < 1 or offset + length > size:
                raise _bad("can't parse entities: entity beyond the end of the text")
        return [dict(e) for e in value]

    @staticmethod
    def _markup(value: Any) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        if "inline_keyboard" not in value:
            return value
        rows = value["inline_keyboard"]
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad('field "inline_keyboard" must be an Array of Arrays')
        for row in rows:
            for button in row:
                if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                    raise _bad(
                        'can\'t parse inline keyboard button: Field "text" must be of type String'
                    )
                if not _BUTTON_ACTIONS & button.keys():
                    raise _bad(
                        "can't parse inline keyboard button: Text buttons are unallowed in the "
                        "inline keyboard"
                    )
                data = button.get("callback_data")
                if data is not None and (
                    not isinstance(data, str)
                    or not 1 <= len(data.encode()) <= MAX_CALLBACK_DATA_BYTES
                ):
                    raise _bad("BUTTON_DATA_INVALID")
        return value

    def _own_message(self, params: dict[str, Any], missing: str) -> Message:
        if "inline_message_id" in params:
            raise _bad("MESSAGE_ID_INVALID")
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise _bad("message identifier is not specified")
        msg = self._bot_messages.get((chat_id, message_id))
        if msg is None or msg.deleted:
            if (chat_id, message_id) in self._user_messages:
                raise _bad("message can't be edited")
            raise _bad(missing)
        return msg

    # --- methods

    async def _get_me(self, record: Request) -> JSON:
        return self.bot_user

    async def _send_message(self, record: Request) -> JSON:
        params = record.params
        chat_id = self._chat_id(params)
        text, parse_mode, parsed = self._text(params, "message is too long")
        markup = self._markup(params.get("reply_markup"))
        gone = self._gone_topics.get((chat_id, params.get("message_thread_id", 0)))
        if gone is not None:
            raise _bad(gone)
        if self.enforce_limits:
            wait = self._limit_wait(chat_id, record.time)
            if wait > 1e-9:
                raise _too_many(max(1, math.ceil(wait)))
        msg = Message(
            chat_id=chat_id,
            text=text,
            parse_mode=parse_mode,
            reply_markup=markup,
            message_id=self._next_message_id(chat_id),
            time=record.time,
            plain_text=parsed.text,
            entities=parsed.entities,
            params=dict(params),
            date=int(_time.time()),
        )
        self.messages.append(msg)
        self._bot_messages[(chat_id, msg.message_id)] = msg
        return self._message_json(msg)

    async def _edit_message_text(self, record: Request) -> JSON:
        params = record.params
        msg = self._own_message(params, "message to edit not found")
        text, parse_mode, parsed = self._text(params, "MESSAGE_TOO_LONG")
        markup = self._markup(params.get("reply_markup"))  # omitted: the keyboard goes away
        if (parsed.text, parsed.entities, markup) == (
            msg.plain_text,
            msg.entities,
            msg.reply_markup,
        ):
            raise _bad(_NOT_MODIFIED)
        msg.text, msg.parse_mode, msg.reply_markup = text, parse_mode, markup
        msg.plain_text, msg.entities = parsed.text, parsed.entities
        return self._edited(msg)

    async def _edit_message_reply_markup(self, record: Request) -> JSON:
        params = record.params
        msg = self._own_message(params, "message to edit not found")
        markup = self._markup(params.get("reply_markup"))
        if markup == msg.reply_markup:
            raise _bad(_NOT_MODIFIED)
        msg.reply_markup = markup
        return self._edited(msg)

    def _edited(self, msg: Message) -> JSON:
        msg.edits += 1
        msg.edit_date = int(_time.time())
        return self._message_json(msg)

    async def _delete_message(self, record: Request) -> JSON:
        params = record.params
        chat_id = self._chat_id(params)
        message_id = params.get("message_id")
        if not isinstance(message_id, int) or isinstance(message_id, bool):
            raise _bad("message identifier is not specified")
        msg = self._bot_messages.get((chat_id, message_id))
        if msg is not None and not msg.deleted:
            msg.deleted = True
            return True
        if self._user_messages.pop((chat_id, message_id), None) is not None:
            return True
        raise _bad("message to delete not found")

    async def _get_chat(self, record: Request) -> JSON:
        chat_id = self._chat_id(record.params)
        return {
            **self._chat_json(chat_id),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": {
                "unlimited_gifts": False,
                "limited_gifts": False,
                "unique_gifts": False,
                "premium_subscription": False,
                "gifts_from_channels": False,
            },
        }

    async def _get_updates(self, record: Request) -> JSON:
        params = record.params
        offset = params.get("offset")
        limit = params.get("limit", 100)
        timeout = params.get("timeout", 0)
        allowed = params.get("allowed_updates")
        if offset is not None and not isinstance(offset, int):
            raise _bad("invalid offset")
        if not isinstance(limit, int):
            raise _bad("invalid limit")
        if not isinstance(timeout, int | float):
            raise _bad("invalid timeout")
        if allowed is not None:
            if not isinstance(allowed, list):
                raise _bad("can't parse allowed_updates JSON object")
            self._allowed_updates = {str(a) for a in allowed} or None
        if offset is not None:
            if offset < 0:
                self._pending = self._pending[offset:]
            else:
                self._pending = [u for u in self._pending if u["update_id"] >= offset]
        limit = min(max(limit, 1), 100)
        self._poll_generation += 1
        generation = self._poll_generation
        self._wake()  # an older poll still waiting is terminated (409), as on Telegram
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(float(timeout), 0.0)
        while True:
            if generation != self._poll_generation:
                raise _ApiError(409, _CONFLICT)
            batch = [u for u in self._pending if self._allowed(u)][:limit]
            remaining = deadline - loop.time()
            if batch or remaining <= 0:
                return batch
            event = self._wakeup
            try:
                async with asyncio.timeout(remaining):
                    await event.wait()
            except TimeoutError:
                pass

    def _allowed(self, update: dict[str, Any]) -> bool:
        kind = next((k for k in update if k != "update_id"), "")
        if self._allowed_updates is None:  # never set, or set to []: Telegram's default
            return kind not in _NOT_BY_DEFAULT
        return kind in self._allowed_updates

    async def _delete_webhook(self, record: Request) -> JSON:
        if record.params.get("drop_pending_updates") is True:
            self._pending.clear()
        return True

    async def _get_webhook_info(self, record: Request) -> JSON:
        return {
            "url": "",
            "has_custom_certificate": False,
            "pending_update_count": len(self._pending),
        }

    @staticmethod
    def _commands_key(scope: Any, language_code: Any) -> tuple[str, str]:
        scope = scope if isinstance(scope, dict) else {"type": "default"}
        return json.dumps(scope, sort_keys=True), str(language_code or "")

    async def _set_my_commands(self, record: Request) -> JSON:
        params = record.params
        commands = params.get("commands")
        if not isinstance(commands, list):
            raise _bad("can't parse commands JSON object")
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        clean: list[dict[str, Any]] = []
        for c in commands:
            if not isinstance(c, dict):
                raise _bad("can't parse BotCommand JSON object")
            name, description = c.get("command"), c.get("description")
            if not isinstance(name, str) or not _COMMAND_NAME.fullmatch(name):
                raise _bad("BOT_COMMAND_INVALID")
            if not isinstance(description, str) or not 1 <= len(description.strip()) <= 256:
                raise _bad("BOT_COMMAND_DESCRIPTION_INVALID")
            clean.append({"command": name, "description": description})
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        if clean:
            self.scoped_commands[key] = clean
        else:
            self.scoped_commands.pop(key, None)
        return True

    async def _get_my_commands(self, record: Request) -> JSON:
        params = record.params
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        return list(self.scoped_commands.get(key, []))

    async def _delete_my_commands(self, record: Request) -> JSON:
        params = record.params
        key = self._commands_key(params.get("scope"), params.get("language_code"))
        self.scoped_commands.pop(key, None)
        return True

    async def _answer_callback_query(self, record: Request) -> JSON:
        params = record.params
        query_id = params.get("callback_query_id")
        query = self._callbacks.pop(str(query_id), None) if query_id is not None else None
        if query is None:
            raise _bad("query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        url = params.get("url")
        if isinstance(text, str) and _utf16_len(text) > MAX_CALLBACK_ANSWER:
            self._callbacks[str(query_id)] = query  # refused: it may be answered still
            raise _bad("MESSAGE_TOO_LONG")
        self.answered_callbacks.append(
            CallbackAnswer(
                callback_query_id=str(query_id),
                data=query.data,
                chat_id=query.chat_id,
                message_id=query.message_id,
                text=text if isinstance(text, str) else None,
                show_alert=params.get("show_alert") is True,
                url=url if isinstance(url, str) else None,
                time=record.time,
            )
        )
        return True
