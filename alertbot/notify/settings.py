"""Delivery settings: Telegram, the webhook, the outbox."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from alertbot.errors import ConfigError
from alertbot.rules.ids import CHAT_ID_RANGE, chat_id
from alertbot.rules.model import WEBHOOK_FORMATS
from alertbot.rules.urls import url_password
from alertbot.settings import MAX_SECONDS, env_choice, env_int, env_seconds, env_url, env_zone
from alertbot.zones import UTC_NAME

_TOKEN_RE = re.compile(r"^\d{3,}:[A-Za-z0-9_-]{20,}$")


def parse_chats(name: str, text: str) -> tuple[int, ...]:
    """``"123, -100456"`` -> (123, -100456); ConfigError naming the variable otherwise."""
    out = []
    for part in text.replace(";", ",").split(","):
        part = part.strip()
        if not part:
            continue
        chat = chat_id(part)
        if chat is None:
            shown = part if len(part) <= 32 else part[:31] + "…"
            raise ConfigError(
                f"{name}: expected chat ids separated by commas (integers from {CHAT_ID_RANGE}), "
                f"got {shown!r}"
            )
        out.append(chat)
    return tuple(out)


#: a webhook signing secret's least length: a short one is easy to guess, and redacting a
#: short word from every log line would blank ordinary words too
MIN_SECRET = 16


def secret_problem(secret: str) -> str:
    return (
        f"too short ({len(secret)} characters): a signing secret needs at least {MIN_SECRET} "
        "(e.g. openssl rand -hex 16)"
    )


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    """Times are seconds."""

    telegram_token: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    admin_chats: tuple[int, ...] = ()
    webhook_url: str | None = None
    webhook_secret: str | None = None
    #: ALERTBOT_WEBHOOK_URL's body: "json", "slack" or "discord"; None: told by its host
    webhook_format: str | None = None
    #: the time zone of the rule files' alerts and of the chats that set none (/timezone)
    timezone: str = UTC_NAME
    db: str = "alertbot.db"
    #: Telegram has not succeeded within this long: the fallback webhook gets the alert too
    fallback_after: float = 60.0
    #: a delivery still failing after this long is given up (failed) and reported
    give_up_after: float = 24 * 3600.0
    #: alerts whose deliveries are all settled are deleted from the outbox this long after they
    #: were created (0: kept for ever); open deliveries are kept however old
    alert_retention: float = 7 * 86400.0
    #: Telegram deliveries still being attempted that are held in memory, at most, and as many
    #: webhook-channel deliveries (each chat, each webhook URL at most CHAT_WINDOW of them); the
    #: others wait in the database only (Outbox)
    delivery_memory: int = 5000
    #: at shutdown, how long the outbox goes on trying to write what is queued while the
    #: database refuses writes (when it is not given a grace period of its own)
    close_timeout: float = 3.0
    #: an alert not stored this long after it fired (a database held up by a lock or a slow
    #: disk) makes /healthz unhealthy
    unstored_after: float = 5.0
    telegram_timeout: float = 10.0
    webhook_timeout: float = 10.0
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    #: Telegram's limits: about one message a second per chat, 20 a minute per group, 30 a
    #: second in all
    chat_interval: float = 1.0
    group_interval: float = 3.0
    overall_per_second: int = 30
    max_message: int = 4096

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DeliverySettings:
        e = os.environ if env is None else env
        token = e.get("ALERTBOT_TELEGRAM_TOKEN", "").strip() or None
        if token is not None and not _TOKEN_RE.match(token):
            raise ConfigError(
                "ALERTBOT_TELEGRAM_TOKEN: not a bot token (expected digits, a colon and the "
                "secret part, as @BotFather gives it)"
            )
        api = env_url(e, "ALERTBOT_TELEGRAM_API_URL", "https://api.telegram.org", ("http", "https"))
        if api.rstrip("/").endswith("/bot"):
            # python-telegram-bot's base_url style: the token would be rejected, wrongly
            raise ConfigError(
                f"ALERTBOT_TELEGRAM_API_URL: the Bot API root, without /bot (the bot calls "
                f"ROOT/bot<token>/<method>), got {api}"
            )
        secret = e.get("ALERTBOT_WEBHOOK_SECRET", "") or None
        if secret is not None and len(secret) < MIN_SECRET:
            raise ConfigError(f"ALERTBOT_WEBHOOK_SECRET: {secret_problem(secret)}")
        return cls(
            telegram_token=token,
            telegram_api_url=api,
            admin_chats=parse_chats("ALERTBOT_ADMIN_CHATS", e.get("ALERTBOT_ADMIN_CHATS", "")),
            webhook_url=env_url(e, "ALERTBOT_WEBHOOK_URL", "", ("http", "https"), root=False)
            or None,
            webhook_secret=secret,
            webhook_format=env_choice(e, "ALERTBOT_WEBHOOK_FORMAT", "", WEBHOOK_FORMATS) or None,
            timezone=env_zone(e, "ALERTBOT_TIMEZONE"),
            db=e.get("ALERTBOT_DB", "").strip() or "alertbot.db",
            fallback_after=env_seconds(e, "ALERTBOT_FALLBACK_AFTER", 60.0, minimum=0.001),
            give_up_after=env_seconds(e, "ALERTBOT_DELIVERY_GIVE_UP", 24 * 3600.0, minimum=1),
            alert_retention=env_seconds(
                e, "ALERTBOT_ALERT_RETENTION", 7 * 86400.0, maximum=10 * MAX_SECONDS
            ),
            delivery_memory=env_int(e, "ALERTBOT_DELIVERY_MEMORY", 5000, minimum=100),
        )

    def secrets(self) -> list[str]:
        """Values that must never appear in a log line: the token, the webhook's secret, and
        the passwords in the webhook's URL and the Bot API's (behind a proxy that asks for
        one; httpx logs request URLs at debug level), as ``:PASSWORD@``, so that a short one
        does not blank the same letters everywhere else."""
        userinfo = [
            f":{password}@"
            for url in (self.webhook_url or "", self.telegram_api_url)
            if (password := url_password(url))
        ]
        return [s for s in (self.telegram_token, self.webhook_secret, *userinfo) if s]
