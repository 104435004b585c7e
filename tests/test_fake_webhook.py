"""Tests of the webhook receiver (tests/fakes/webhook.py).

The webhook delivery tests trust this receiver to behave like a real endpoint (and to fail like
one); each test here pins one behaviour with plain ``httpx``, never with alertbot's code.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fakes.webhook import WebhookReceiver, self_signed_tls, sign

SECRET = "s3cret"
TLS = ssl.create_default_context()  # one for all clients: building one costs ~30 ms
ALERT = {
    "version": 1,
    "id": "r1:BTCUSDT:1700000000000",
    "rule": "r1",
    "symbol": "BTCUSDT",
    "condition": "price > 70000",
    "time": 1_700_000_000_000,
    "price": "70000.1",
    "message": "BTCUSDT crossed 70000",
}


@pytest.fixture
async def hook() -> AsyncIterator[WebhookReceiver]:
    async with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0, verify=TLS) as c:
        yield c


def body_of(alert: dict[str, Any]) -> bytes:
    return json.dumps(alert, separators=(",", ":")).encode()


async def post(
    c: httpx.AsyncClient,
    receiver: WebhookReceiver,
    alert: dict[str, Any] = ALERT,
    *,
    secret: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    """POST ``alert`` as alertbot does: raw JSON body, Idempotency-Key, optional signature."""
    body = body_of(alert)
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(alert["id"])}
    if secret is not None:
        headers["X-Alertbot-Signature"] = sign(secret, body)
    return await c.post(receiver.url, content=body, headers=headers, **kwargs)


# --- recording


async def test_a_post_is_recorded_and_accepted(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    r = await post(client, hook)
    assert (r.status_code, r.json()) == (200, {"ok": True})
    [d] = hook.accepted
    assert hook.url == f"http://127.0.0.1:{hook.port}/hook"
    assert d.body == body_of(ALERT)
    assert d.json == ALERT
    assert d.headers["idempotency-key"] == d.headers["IDEMPOTENCY-KEY"] == ALERT["id"]
    assert (d.id, d.status, d.signature_ok) == (ALERT["id"], 200, None)


async def test_a_non_json_body_is_recorded_with_json_none(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    await client.post(hook.url, content=b"not json", headers={"Idempotency-Key": "k1"})
    [d] = hook.deliveries
    assert (d.json, d.body, d.id) == (None, b"not json", "k1")


async def test_other_paths_are_404_and_other_methods_405(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    wrong = await client.post(f"{hook.base_url}/other", content=b"{}")
    get = await client.get(hook.url)
    assert (wrong.status_code, get.status_code) == (404, 405)
    assert [(d.path, d.status) for d in hook.deliveries] == [("/other", 404)]
    assert hook.accepted == []


# --- signatures


async def test_signature_is_checked_against_the_raw_body(client: httpx.AsyncClient) -> None:
    async with WebhookReceiver(secret=SECRET) as hook:
        await post(client, hook, secret=SECRET)
        await post(client, hook, secret="wrong")
        await post(client, hook)
        tampered = await client.post(
            hook.url,
            content=body_of(ALERT) + b" ",
            headers={"X-Alertbot-Signature": sign(SECRET, body_of(ALERT))},
        )
    assert [d.signature_ok for d in hook.deliveries] == [True, False, False, False]
    assert tampered.status_code == 200  # recorded, not enforced by default
    assert sign(SECRET, b"x").startswith("sha256=")


async def test_enforce_signature_answers_401(client: httpx.AsyncClient) -> None:
    async with WebhookReceiver(secret=SECRET, enforce_signature=True) as hook:
        good = await post(client, hook, secret=SECRET)
        bad = await post(client, hook, secret="wrong")
    assert (good.status_code, bad.status_code) == (200, 401)
    assert len(hook.accepted) == 1


# --- scripted answers


async def test_respond_with_plays_the_statuses_in_order_then_200(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.respond_with(500, 204, 400)
    hook.respond_with(502)
    statuses = [(await post(client, hook)).status_code for _ in range(5)]
    assert statuses == [500, 204, 400, 502, 200]
    assert [d.status for d in hook.accepted] == [204, 200]


async def test_clear_responses_forgets_the_statuses_not_used_yet(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.respond_with(429, 429, 503)
    assert (await post(client, hook)).status_code == 429
    hook.clear_responses()
    assert (await post(client, hook)).status_code == 200


async def test_retry_after_header_only_on_429_and_503(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.respond_with(429, 503, 500, retry_after=2)
    hook.respond_with(429, retry_after=0.25)
    answers = [await post(client, hook) for _ in range(4)]
    assert [r.headers.get("retry-after") for r in answers] == ["2", "2", None, "0.25"]


async def test_respond_with_rejects_non_final_statuses(hook: WebhookReceiver) -> None:
    with pytest.raises(ValueError, match=r"200\.\.599"):
        hook.respond_with(100)


# --- failures as httpx sees them


async def test_down_500_until_recover(hook: WebhookReceiver, client: httpx.AsyncClient) -> None:
    hook.respond_with(503)
    hook.down()
    assert (await post(client, hook)).status_code == 500
    hook.recover()
    assert (await post(client, hook)).status_code == 503  # the script waited
    assert (await post(client, hook)).status_code == 200


async def test_down_hang_is_a_read_timeout(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.down("hang")
    with pytest.raises(httpx.ReadTimeout):
        await post(client, hook, timeout=httpx.Timeout(10.0, read=0.2))
    [d] = hook.deliveries
    assert d.status is None
    assert d.json == ALERT  # the request was read in full


async def test_down_reset_is_a_read_error(hook: WebhookReceiver, client: httpx.AsyncClient) -> None:
    hook.down("reset")
    with pytest.raises(httpx.ReadError):
        await post(client, hook)
    assert [d.status for d in hook.deliveries] == [None]


async def test_down_close_is_a_remote_protocol_error(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.down("close")
    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        await post(client, hook)


async def test_down_garbage_is_a_remote_protocol_error(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.down("garbage")
    with pytest.raises(httpx.RemoteProtocolError):
        await post(client, hook)
    hook.recover()
    assert (await post(client, hook)).status_code == 200


async def test_down_trickle_never_completes_the_headers_though_each_read_is_quick(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    """Every read gets bytes within httpx's read timeout: only a deadline on the whole answer
    (here asyncio's) ends the request."""
    hook.down("trickle")
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await post(client, hook, timeout=httpx.Timeout(10.0, read=0.1))
    assert [d.status for d in hook.deliveries] == [None]


async def test_down_endless_is_a_200_whose_body_never_ends(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.down("endless")
    async with client.stream(
        "POST", hook.url, content=json.dumps(ALERT).encode(), timeout=0.5
    ) as response:
        assert response.status_code == 200
        read = 0
        async for chunk in response.aiter_raw():
            read += len(chunk)
            if read > 1_000_000:
                break
    assert read > 1_000_000
    assert [d.status for d in hook.deliveries] == [200]


async def test_redirect_answers_a_3xx_with_its_location_until_recover(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.redirect("https://elsewhere.example/hook", 308)
    r = await post(client, hook)
    assert (r.status_code, r.headers["location"]) == (308, "https://elsewhere.example/hook")
    assert [d.status for d in hook.deliveries] == [308]
    hook.recover()
    assert (await post(client, hook)).status_code == 200


async def test_redirect_rejects_a_status_that_is_no_redirect(hook: WebhookReceiver) -> None:
    with pytest.raises(ValueError, match="3xx"):
        hook.redirect("https://elsewhere.example/hook", 200)


async def test_tls_with_the_self_signed_certificate_fails_verification_and_serves_otherwise(
    client: httpx.AsyncClient,
) -> None:
    async with WebhookReceiver(tls=self_signed_tls()) as receiver:
        assert receiver.url.startswith("https://127.0.0.1:")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await post(client, receiver)
        async with httpx.AsyncClient(verify=False) as trusting:
            assert (await post(trusting, receiver)).status_code == 200
    assert [d.status for d in receiver.deliveries] == [200]


async def test_down_rejects_unknown_modes(hook: WebhookReceiver) -> None:
    with pytest.raises(ValueError, match="mode"):
        hook.down("explode")


async def test_delay_makes_the_answer_late_but_the_delivery_counts(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.delay(0.3)
    with pytest.raises(httpx.ReadTimeout):
        await post(client, hook, timeout=httpx.Timeout(10.0, read=0.1))
    await hook.wait_for_deliveries(1)  # processed on receipt; only the answer was late
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert (await post(client, hook)).status_code == 200
    assert loop.time() - start >= 0.3
    assert hook.duplicates() == [ALERT["id"]]  # the timed-out attempt was accepted too


# --- ids and waiting


async def test_unique_ids_and_duplicates(hook: WebhookReceiver, client: httpx.AsyncClient) -> None:
    other = {**ALERT, "id": "r2:ETHUSDT:1700000000000"}
    hook.respond_with(500)
    for alert in (ALERT, ALERT, other, ALERT):  # the first ALERT is refused: not accepted
        await post(client, hook, alert)
    assert hook.unique_ids() == {ALERT["id"], other["id"]}
    assert hook.duplicates() == [ALERT["id"]]


async def test_wait_for_deliveries_waits_for_accepted_ones(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    hook.respond_with(500)

    async def later() -> None:
        await asyncio.sleep(0.05)
        await post(client, hook)
        await post(client, hook)

    task = asyncio.create_task(later())
    accepted = await hook.wait_for_deliveries(1, timeout=2)
    await task
    assert [d.status for d in accepted] == [200]
    with pytest.raises(TimeoutError, match="deliveries"):
        await hook.wait_for_deliveries(2, timeout=0.05)


# --- connections and lifecycle


async def test_keep_alive_serves_several_requests_on_one_connection(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    for _ in range(3):
        assert (await post(client, hook)).status_code == 200
    assert hook.open_connections == 1


async def test_closed_the_port_refuses_and_started_again_on_it_serves(
    hook: WebhookReceiver, client: httpx.AsyncClient
) -> None:
    """``aclose`` then ``start(port)``: connection refused meanwhile, then the same URL
    works again (a receiver that was down, not one that moved)."""
    url, port = hook.url, hook.port
    await hook.aclose()
    with pytest.raises(httpx.ConnectError):
        await post(client, hook)
    await hook.start(port)
    assert hook.url == url
    assert (await post(client, hook)).status_code == 200
    assert [d.status for d in hook.deliveries] == [200]


async def test_shutdown_ends_hanging_requests_without_leaks(client: httpx.AsyncClient) -> None:
    async with WebhookReceiver() as hook:
        hook.down("hang")
        pending = asyncio.create_task(post(client, hook))
        await hook.wait_for(lambda: len(hook.deliveries) == 1)
        assert hook.open_connections == 1
    with pytest.raises(httpx.TransportError):
        await pending
    assert hook.open_connections == 0
    assert hook.errors == []
