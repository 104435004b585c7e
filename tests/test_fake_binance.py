"""Tests of the fake Binance market-data service (tests/fakes/binance.py).

The feed client's tests trust this fake to behave like fstream.binance.com; each test here pins one
behaviour with a raw ``websockets`` client or ``httpx``, never with alertbot's own code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidStatus

from tests.fakes.binance import SETTLING_SYMBOL, FakeBinance, mini_ticker

BTC = mini_ticker("BTCUSDT", 70000.1, 1_700_000_000_000)
ETH = mini_ticker("ETHUSDT", 3500.5, 1_700_000_000_000)
QUIET = 0.15  # how long "nothing arrives" is watched


@asynccontextmanager
async def client(fake: FakeBinance, path: str, **kwargs: Any) -> AsyncIterator[ClientConnection]:
    async with connect(fake.ws_url + path, proxy=None, open_timeout=2, **kwargs) as ws:
        yield ws


async def recv_json(ws: ClientConnection, timeout: float = 2.0) -> Any:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def assert_nothing(ws: ClientConnection, within: float = QUIET) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(within):
            await ws.recv()


async def request(ws: ClientConnection, msg: Any) -> Any:
    await ws.send(msg if isinstance(msg, str | bytes) else json.dumps(msg))
    return await recv_json(ws)


async def handshake_status(fake: FakeBinance, path: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        async with client(fake, path):
            pass
    return info.value.response.status_code


# --- paths and payload shapes


@pytest.mark.asyncio
async def test_raw_symbol_stream_delivers_the_bare_object() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws/btcusdt@miniTicker") as ws:
        await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
        assert await fake.publish([BTC, ETH]) == 1
        assert await recv_json(ws) == BTC
        conn = fake.connections[0]
        assert (conn.combined, conn.legacy, conn.streams) == (False, False, {"btcusdt@miniTicker"})


@pytest.mark.asyncio
async def test_raw_all_market_stream_delivers_one_array_per_publish() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws/!miniTicker@arr") as ws:
        await fake.wait_for_connections(1)
        assert await fake.publish([BTC, ETH]) == 1
        assert await recv_json(ws) == [BTC, ETH]
        assert await fake.publish([ETH]) == 1
        assert await recv_json(ws) == [ETH]


@pytest.mark.asyncio
async def test_combined_path_wraps_every_payload() -> None:
    path = "/market/stream?streams=!miniTicker@arr/ethusdt@miniTicker"
    async with FakeBinance() as fake, client(fake, path) as ws:
        await fake.wait_for_connections(1)
        assert fake.connections[0].combined
        assert await fake.publish([BTC, ETH]) == 2
        assert await recv_json(ws) == {"stream": "!miniTicker@arr", "data": [BTC, ETH]}
        assert await recv_json(ws) == {"stream": "ethusdt@miniTicker", "data": ETH}


@pytest.mark.asyncio
async def test_publish_sends_only_to_matching_streams() -> None:
    async with (
        FakeBinance() as fake,
        client(fake, "/market/ws/btcusdt@miniTicker") as btc,
        client(fake, "/market/ws/ethusdt@miniTicker") as eth,
        client(fake, "/market/ws") as bare,
    ):
        await fake.wait_for_connections(3)
        assert await fake.publish([BTC]) == 1
        assert await recv_json(btc) == BTC
        await assert_nothing(eth)
        await assert_nothing(bare)
        assert await fake.publish([]) == 0  # an empty tick sends nothing, not even "[]"


@pytest.mark.parametrize(
    "path", ["/ws/!miniTicker@arr", "/ws", "/stream?streams=btcusdt@miniTicker"]
)
@pytest.mark.asyncio
async def test_legacy_path_is_accepted_then_silent(path: str) -> None:
    async with FakeBinance() as fake, client(fake, path) as ws:
        await fake.wait_for_connections(1)
        conn = fake.connections[0]
        assert conn.legacy
        assert conn.streams == set()  # what the URL asked for is never served
        assert await fake.publish([BTC, ETH]) == 0
        assert await fake.send_raw('{"x":1}') == 0
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 1}))
        await assert_nothing(ws)
        await fake.wait_for(lambda: conn.messages_in == 1)
        await ws.ping()  # the socket itself is alive


@pytest.mark.parametrize("path", ["/", "/market", "/market/wss/x", "/foo/ws", "/market/ws/a/b"])
@pytest.mark.asyncio
async def test_unknown_path_is_rejected_with_404(path: str) -> None:
    async with FakeBinance() as fake:
        assert await handshake_status(fake, path) == 404
        assert fake.stats.rejected == 1
        assert fake.stats.handshakes == 0


@pytest.mark.asyncio
async def test_invalid_stream_name_in_url_is_rejected_with_400() -> None:
    async with FakeBinance() as fake:
        assert await handshake_status(fake, "/market/ws/BTCUSDT@miniTicker") == 400


# --- live methods


@pytest.mark.asyncio
async def test_subscribe_unsubscribe_list_are_acknowledged() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws") as ws:
        sub = {"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker", "!miniTicker@arr"], "id": 1}
        assert await request(ws, sub) == {"result": None, "id": 1}
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 2}) == {
            "result": ["!miniTicker@arr", "btcusdt@miniTicker"],
            "id": 2,
        }
        unsub = {"method": "UNSUBSCRIBE", "params": ["!miniTicker@arr"], "id": 3}
        assert await request(ws, unsub) == {"result": None, "id": 3}
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4}) == {
            "result": ["btcusdt@miniTicker"],
            "id": 4,
        }
        assert fake.connections[0].streams == {"btcusdt@miniTicker"}
        assert [m["id"] for _, m, _ in fake.stats.requests] == [1, 2, 3, 4]
        assert await fake.publish([BTC]) == 1  # the subscription is served
        assert await recv_json(ws) == BTC


@pytest.mark.asyncio
async def test_url_streams_are_listed_and_can_be_unsubscribed() -> None:
    async with (
        FakeBinance() as fake,
        client(fake, "/market/stream?streams=btcusdt@miniTicker") as ws,
    ):
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 7}) == {
            "result": ["btcusdt@miniTicker"],
            "id": 7,
        }
        unsub = {"method": "UNSUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": 8}
        assert await request(ws, unsub) == {"result": None, "id": 8}
        assert await fake.publish([BTC]) == 0


BAD_REQUESTS: list[tuple[str, Any, int | None]] = [
    ("invalid JSON", '{"method": "SUBSCRIBE",', None),
    ("not an object", json.dumps(["SUBSCRIBE"]), None),
    ("unknown method", {"method": "SUBSCRIBE_ALL", "params": [], "id": 5}, 5),
    ("missing method", {"params": ["btcusdt@miniTicker"], "id": 5}, 5),
    ("params missing", {"method": "SUBSCRIBE", "id": 5}, 5),
    ("params not a list", {"method": "SUBSCRIBE", "params": "btcusdt@miniTicker", "id": 5}, 5),
    ("params empty", {"method": "UNSUBSCRIBE", "params": [], "id": 5}, 5),
    ("uppercase stream", {"method": "SUBSCRIBE", "params": ["BTCUSDT@miniTicker"], "id": 5}, 5),
    ("unknown stream", {"method": "SUBSCRIBE", "params": ["btcusdt@aggTrade"], "id": 5}, 5),
    ("non-str stream", {"method": "SUBSCRIBE", "params": [1], "id": 5}, 5),
    ("params on LIST", {"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 5}, 5),
    ("id missing", {"method": "LIST_SUBSCRIPTIONS"}, None),
    ("id a string", {"method": "LIST_SUBSCRIPTIONS", "id": "5"}, None),
    ("id negative", {"method": "LIST_SUBSCRIPTIONS", "id": -1}, None),
    ("id a float", {"method": "LIST_SUBSCRIPTIONS", "id": 1.5}, None),
    ("id a bool", {"method": "LIST_SUBSCRIPTIONS", "id": True}, None),
]


@pytest.mark.parametrize(
    ("msg", "reply_id"), [(m, i) for _, m, i in BAD_REQUESTS], ids=[k for k, _, _ in BAD_REQUESTS]
)
@pytest.mark.asyncio
async def test_bad_request_gets_error_code_2_and_changes_nothing(
    msg: Any, reply_id: int | None
) -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws/ethusdt@miniTicker") as ws:
        reply = await request(ws, msg)
        assert reply["id"] == reply_id
        assert reply["error"]["code"] == 2
        assert reply["error"]["msg"].startswith("Invalid request: ")
        assert set(reply) == {"error", "id"}
        assert fake.connections[0].streams == {"ethusdt@miniTicker"}


@pytest.mark.asyncio
async def test_binary_frame_gets_an_error_reply() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws") as ws:
        reply = await request(ws, b'{"method":"LIST_SUBSCRIPTIONS","id":1}')
        assert reply["error"]["code"] == 2
        assert reply["id"] is None
        assert fake.stats.requests[0][1] == b'{"method":"LIST_SUBSCRIPTIONS","id":1}'


# --- limits


@pytest.mark.asyncio
async def test_eleventh_message_within_a_second_closes_with_1008() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws") as ws:
        for i in range(11):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        for i in range(10):
            assert await recv_json(ws) == {"result": [], "id": i}
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008
        await fake.wait_for(lambda: len(fake.closed) == 1)
        assert fake.closed[0].closed_code == 1008
        assert fake.stats.rate_limit_closes == 1
        assert fake.closed[0].messages_in == 11


@pytest.mark.asyncio
async def test_rate_limit_window_slides() -> None:
    """The limit is per sliding window (shortened to 0.2 s here): a later burst is fine."""
    async with (
        FakeBinance(max_incoming_per_s=3, rate_window=0.2) as fake,
        client(fake, "/market/ws") as ws,
    ):
        for burst in range(2):
            for i in range(3):
                assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": i}) == {
                    "result": [],
                    "id": i,
                }
            if burst == 0:
                await asyncio.sleep(0.25)
        assert fake.stats.rate_limit_closes == 0
        assert len(fake.connections) == 1


@pytest.mark.asyncio
async def test_pings_and_pongs_count_toward_the_message_limit() -> None:
    """Binance counts every incoming frame, control frames too: on spot (5 a second) two
    requests, two pings and an unsolicited pong fill the second, and a third request is over."""
    async with FakeBinance(market="spot") as fake, client(fake, "/ws", ping_interval=None) as ws:
        for i in range(2):
            assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": i}) == {
                "result": [],
                "id": i,
            }
        for _ in range(2):
            async with asyncio.timeout(2):
                await (await ws.ping())  # answered: the fifth frame would not be
        await ws.pong()
        await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)  # no answer: the close
        assert info.value.rcvd is not None
        assert (info.value.rcvd.code, info.value.rcvd.reason) == (1008, "Too many requests")
        await fake.wait_for(lambda: len(fake.closed) == 1)
        conn = fake.closed[0]
        assert (conn.frames_in, conn.messages_in, conn.pings_received) == (6, 3, 2)
        assert fake.stats.rate_limit_closes == 1


@pytest.mark.asyncio
async def test_a_clients_close_frame_counts_toward_the_message_limit() -> None:
    """The client's own close frame is an incoming frame too: on spot, five requests and then
    a close within the second are over the limit (counted; the connection is closing already,
    so it is not closed with 1008 on top). Five requests and nothing more are not."""
    async with FakeBinance(market="spot") as fake:
        for n, over in ((4, 0), (5, 1)):
            async with client(fake, "/ws", ping_interval=None) as ws:
                await fake.wait_for_connections(1)
                for i in range(n):
                    await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
                for _ in range(n):
                    await recv_json(ws)
            await fake.wait_for(lambda: not fake.connections)
            conn = fake.closed[-1]
            assert (conn.frames_in, conn.messages_in, conn.closed_by) == (n + 1, n, "client")
            assert conn.closed_code == 1000
            assert fake.stats.rate_limit_closes == over


@pytest.mark.asyncio
async def test_pongs_answering_the_servers_pings_count_too() -> None:
    """A client that only answers the server's pings, too many of them, is over the limit."""
    async with (
        FakeBinance(ping_interval=0.02, ping_timeout=1.0, max_incoming_per_s=3) as fake,
        client(fake, "/market/ws", ping_interval=None),
    ):
        await fake.wait_for(lambda: len(fake.closed) == 1)
        conn = fake.closed[0]
        assert conn.closed_code == 1008
        assert (conn.frames_in, conn.messages_in) == (4, 0)
        assert fake.stats.rate_limit_closes == 1


@pytest.mark.asyncio
async def test_subscribe_beyond_max_streams_is_refused_and_changes_nothing() -> None:
    async with (
        FakeBinance(max_streams=3) as fake,
        client(fake, "/market/stream?streams=btcusdt@miniTicker/ethusdt@miniTicker") as ws,
    ):
        again = {"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker", "solusdt@miniTicker"]}
        assert await request(ws, {**again, "id": 1}) == {"result": None, "id": 1}  # 3 streams
        over = {"method": "SUBSCRIBE", "params": ["xrpusdt@miniTicker", "!miniTicker@arr"], "id": 2}
        reply = await request(ws, over)
        assert reply["id"] == 2
        assert reply["error"]["code"] == 2
        assert fake.connections[0].streams == {
            "btcusdt@miniTicker",
            "ethusdt@miniTicker",
            "solusdt@miniTicker",
        }


@pytest.mark.asyncio
async def test_url_with_too_many_streams_is_rejected_with_400() -> None:
    async with FakeBinance(max_streams=2) as fake:
        path = "/market/stream?streams=ausdt@miniTicker/busdt@miniTicker/cusdt@miniTicker"
        assert await handshake_status(fake, path) == 400
        async with client(fake, "/market/stream?streams=ausdt@miniTicker/busdt@miniTicker"):
            await fake.wait_for_connections(1)


@pytest.mark.asyncio
async def test_connection_is_closed_with_1001_at_max_age() -> None:
    async with FakeBinance(max_age=0.2) as fake, client(fake, "/market/ws") as ws:
        await fake.wait_for_connections(1)
        opened = fake.connections[0].opened_at
        with pytest.raises(ConnectionClosedOK) as info:
            await recv_json(ws)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1001
        await fake.wait_for(lambda: len(fake.closed) == 1)
        conn = fake.closed[0]
        assert conn.closed_code == 1001
        assert conn.closed_at is not None
        assert 0.2 <= conn.closed_at - opened < 1.0


@pytest.mark.asyncio
async def test_server_pings_answered_by_the_client_keep_the_connection_open() -> None:
    async with (
        # pongs every 30 ms are over any message limit, which is not what this is about
        FakeBinance(ping_interval=0.03, ping_timeout=0.2, max_incoming_per_s=1000) as fake,
        client(fake, "/market/ws", ping_interval=None) as ws,
    ):
        await fake.wait_for_connections(1)
        conn = fake.connections[0]
        await fake.wait_for(lambda: conn.pongs_received >= 3)  # the client never calls recv()
        assert conn.is_open
        assert fake.closed == []
        assert await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1}) == {
            "result": [],
            "id": 1,
        }


@asynccontextmanager
async def stuck_client(fake: FakeBinance) -> AsyncIterator[None]:
    """A raw TCP client that completes the handshake, then never reads nor answers anything."""
    reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
    try:
        writer.write(
            b"GET /market/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        await fake.wait_for_connections(1)
        yield
    finally:
        writer.close()
        await writer.wait_closed()


@pytest.mark.asyncio
async def test_client_not_answering_pings_is_dropped_after_ping_timeout() -> None:
    async with FakeBinance(ping_interval=0.03, ping_timeout=0.1) as fake, stuck_client(fake):
        await fake.wait_for(lambda: len(fake.closed) == 1, timeout=2)
        conn = fake.closed[0]
        assert conn.pings_sent == 1
        assert conn.pongs_received == 0
        assert conn.closed_code == 1006


@pytest.mark.asyncio
async def test_client_that_stops_reading_is_dropped_after_send_timeout() -> None:
    """With send_timeout set, publish/send_raw cannot hang on a client that stopped reading."""
    async with FakeBinance(send_timeout=0.1) as fake, stuck_client(fake):
        conn = fake.connections[0]
        frame = "x" * 1_000_000
        for _ in range(200):  # loopback buffers hold a few MB at most
            if await fake.send_raw(frame) == 0:
                break
        await conn.wait_closed()
        assert conn.closed_code == 1006
        assert fake.stats.slow_drops == 1


# --- injected failures


@pytest.mark.asyncio
async def test_silence_keeps_the_socket_open_but_delivers_and_answers_nothing() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws/!miniTicker@arr") as ws:
        await fake.wait_for_connections(1)
        fake.silence()
        assert fake.connections[0].silenced
        assert await fake.publish([BTC]) == 0
        assert await fake.send_raw("{}") == 0
        await ws.send(
            json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@miniTicker"], "id": 1})
        )
        await assert_nothing(ws)
        assert fake.connections[0].streams == {"!miniTicker@arr"}  # not applied either
        async with asyncio.timeout(1):
            await (await ws.ping())  # pongs still come back
        fake.silence(False)
        assert await fake.publish([BTC]) == 1
        assert await recv_json(ws) == [BTC]


@pytest.mark.asyncio
async def test_silence_future_applies_to_later_connections() -> None:
    async with FakeBinance() as fake:
        fake.silence(future=True)
        async with client(fake, "/market/ws/!miniTicker@arr"):
            await fake.wait_for_connections(1)
            assert fake.connections[0].silenced
            assert await fake.publish([BTC]) == 0
        fake.silence(False)
        async with client(fake, "/market/ws/!miniTicker@arr"):
            await fake.wait_for_connections(1)
            assert not fake.connections[0].silenced


@pytest.mark.asyncio
async def test_silence_opening_silences_later_connections_of_one_kind_only() -> None:
    """``silence_opening("all-market")`` silences the all-market connections opened from then
    on, neither one open before nor a symbol-stream one opened after; ``silence(False)`` ends
    it."""
    async with FakeBinance() as fake, client(fake, "/market/ws/!miniTicker@arr"):
        await fake.wait_for_connections(1)
        fake.silence_opening("all-market")
        async with (
            client(fake, "/market/ws/!miniTicker@arr"),
            client(fake, "/market/stream?streams=btcusdt@miniTicker"),
        ):
            await fake.wait_for_connections(3)
            assert [c.silenced for c in fake.connections] == [False, True, False]
        fake.silence(False)
        async with client(fake, "/market/ws/!miniTicker@arr"):
            await fake.wait_for(lambda: fake.stats.handshakes == 4)
            assert not next(c for c in fake.connections if c.id == 4).silenced


@pytest.mark.asyncio
async def test_lag_delivers_a_connections_frames_late_in_order_and_before_a_clean_close() -> None:
    """A lagging connection gets its data frames (and replies) ``lag`` seconds late and in
    the order sent, another one at once; a clean close comes after the frames on their way."""
    loop = asyncio.get_running_loop()
    async with (
        FakeBinance() as fake,
        client(fake, "/market/ws/!miniTicker@arr") as slow,
    ):
        await fake.wait_for_connections(1)
        fake.lag(0.3)
        async with client(fake, "/market/ws/!miniTicker@arr") as fast:
            await fake.wait_for_connections(2)
            assert [c.lag for c in fake.connections] == [0.3, 0.0]
            sent_at = loop.time()
            assert await fake.publish([BTC]) == 2
            assert await fake.publish([ETH]) == 2
            await slow.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 7}))
            assert await recv_json(fast) == [BTC]
            assert await recv_json(fast) == [ETH]
            assert await recv_json(slow) == [BTC]
            assert loop.time() - sent_at >= 0.3
            assert await recv_json(slow) == [ETH]
            assert await recv_json(slow) == {"result": ["!miniTicker@arr"], "id": 7}
            assert fake.connections[0].frames_out == 3
            await fake.publish([BTC])
            await fake.drop(code=1001, conn=fake.connections[0])
            assert await recv_json(slow) == [BTC]
            with pytest.raises(ConnectionClosedOK):
                await recv_json(slow)


@pytest.mark.asyncio
async def test_a_lagging_connections_pong_comes_after_the_data_sent_before_the_ping() -> None:
    """On a congested path a pong waits behind the data on its way, as over TCP: a client
    can ping to learn that it has read all the server sent before (the feed does so before
    it closes an old socket)."""
    loop = asyncio.get_running_loop()
    async with (
        FakeBinance() as fake,
        client(fake, "/market/ws/!miniTicker@arr") as ws,
    ):
        await fake.wait_for_connections(1)
        fake.lag(0.3)
        await fake.publish([BTC])
        sent_at = loop.time()
        pong = await ws.ping()
        await pong
        assert loop.time() - sent_at >= 0.3  # the pong waited in line
        async with asyncio.timeout(0.05):  # ... behind the frame, already read
            assert await recv_json(ws) == [BTC]


@pytest.mark.asyncio
async def test_a_clients_close_of_a_lagging_connection_counts_from_its_close_frame() -> None:
    """The client lets go when its close frame arrives, though our answer (behind the lag)
    ends the handshake later: closing_at says so at once, and an abort meanwhile is not
    taken as the server's doing."""
    async with FakeBinance() as fake:
        async with client(fake, "/market/ws/!miniTicker@arr") as ws:
            await fake.wait_for_connections(1)
            conn = fake.connections[0]
            fake.lag(0.5, conn=conn)
            await fake.publish([BTC])
            closing = asyncio.create_task(ws.close())
            await fake.wait_for(lambda: conn.closing_at is not None)
            assert conn.closed_by == "client"
            assert conn.is_open  # set before the closing handshake ended: it waits for us
            await fake.drop(conn=conn)  # an abort while it does
            await closing
        assert conn.closed_by == "client"


@pytest.mark.asyncio
async def test_a_clients_close_crossing_ours_on_its_way_is_recorded_with_its_reason() -> None:
    """Our close of a lagging connection reaches the client only behind what is on its way;
    a close frame of the client's that comes before then is its own (it let go, not
    answering ours): its reason and arrival are kept beside when ours reaches it."""
    async with FakeBinance(close_timeout=2.0) as fake:
        async with client(fake, "/market/ws/!miniTicker@arr") as ws:
            await fake.wait_for_connections(1)
            conn = fake.connections[0]
            fake.lag(0.5, conn=conn)
            await fake.publish([BTC])
            dropping = asyncio.create_task(fake.drop(code=1001, conn=conn))
            await fake.wait_for(lambda: conn.server_close_reaches_at is not None)
            await ws.close(1000, "no data")  # before ours arrives
            await dropping
        assert conn.closed_by == "server"
        assert conn.client_close_reason == "no data"
        assert conn.client_close_at is not None
        assert conn.server_close_reaches_at is not None
        assert conn.client_close_at < conn.server_close_reaches_at


@pytest.mark.asyncio
async def test_a_lagging_connection_is_closed_at_its_max_age_while_data_keeps_coming() -> None:
    """The close waits for the frames on their way when it is asked, not for later ones."""
    async with (
        FakeBinance(max_age=0.3) as fake,
        client(fake, "/market/ws/!miniTicker@arr") as ws,
    ):
        await fake.wait_for_connections(1)
        fake.lag(0.1)
        time = 0
        while fake.connections:
            time += 1
            await fake.publish([mini_ticker("BTCUSDT", 1, time)])
            await asyncio.sleep(0.02)
            assert time < 200, "not closed"
        assert fake.closed[0].closed_code == 1001
        async for _ in ws:  # the frames on their way, then the close
            pass
        assert ws.close_code == 1001


@pytest.mark.asyncio
async def test_lag_future_applies_to_later_connections_until_lifted() -> None:
    async with FakeBinance() as fake:
        fake.lag(0.2, future=True)
        async with client(fake, "/market/ws/!miniTicker@arr"):
            await fake.wait_for_connections(1)
            assert fake.connections[0].lag == 0.2
        fake.lag(0)
        async with client(fake, "/market/ws/!miniTicker@arr"):
            await fake.wait_for_connections(1)
            assert fake.connections[0].lag == 0.0


@pytest.mark.asyncio
async def test_closed_by_says_which_side_began_to_close_and_when() -> None:
    async with FakeBinance() as fake:
        for drop in (lambda: fake.drop(code=1001), lambda: fake.drop(), None):
            async with client(fake, "/market/ws/!miniTicker@arr"):
                await fake.wait_for_connections(1)
                if drop is not None:
                    await drop()
            await fake.wait_for(lambda: not fake.connections)
        assert [c.closed_by for c in fake.closed] == ["server", "abort", "client"]
        assert all(c.opened_at <= (c.closing_at or 0) <= (c.closed_at or 0) for c in fake.closed)


@pytest.mark.asyncio
async def test_drop_without_code_is_an_abrupt_close_without_close_frame() -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws") as ws:
        await fake.wait_for_connections(1)
        await fake.drop()
        assert fake.connections == []
        assert fake.closed[0].closed_code == 1006
        with pytest.raises(ConnectionClosedError) as info:
            await recv_json(ws)
        assert info.value.rcvd is None
        assert ws.close_code == 1006


@pytest.mark.parametrize(
    ("code", "exc"), [(1008, ConnectionClosedError), (1001, ConnectionClosedOK)]
)
@pytest.mark.asyncio
async def test_drop_with_code_is_a_clean_close_with_that_code(
    code: int, exc: type[Exception]
) -> None:
    async with FakeBinance() as fake, client(fake, "/market/ws") as ws:
        await fake.wait_for_connections(1)
        await fake.drop(code=code, conn=fake.connections[0])
        assert fake.closed[0].closed_code == code
        with pytest.raises(exc):
            await recv_json(ws)
        assert ws.close_code == code


@pytest.mark.asyncio
async def test_drop_one_connection_leaves_the_others() -> None:
    async with (
        FakeBinance() as fake,
        client(fake, "/market/ws/!miniTicker@arr"),
        client(fake, "/market/ws/!miniTicker@arr") as second,
    ):
        await fake.wait_for_connections(2)
        first = fake.connections[0]
        await fake.drop(conn=first)
        assert fake.closed == [first]
        assert await fake.publish([BTC]) == 1
        assert await recv_json(second) == [BTC]


@pytest.mark.asyncio
async def test_reject_handshakes_fails_the_next_n_attempts() -> None:
    async with FakeBinance() as fake:
        fake.reject_handshakes(2, status=503)
        assert await handshake_status(fake, "/market/ws") == 503
        assert await handshake_status(fake, "/market/ws/btcusdt@miniTicker") == 503
        async with client(fake, "/market/ws"):
            await fake.wait_for_connections(1)
        assert (fake.stats.attempts, fake.stats.rejected, fake.stats.handshakes) == (3, 2, 1)


@pytest.mark.asyncio
async def test_send_raw_delivers_arbitrary_text_to_one_or_all() -> None:
    async with (
        FakeBinance() as fake,
        client(fake, "/market/ws") as a,
        client(fake, "/market/ws") as b,
    ):
        await fake.wait_for_connections(2)
        assert await fake.send_raw('{"e":"24hrMiniTicker",') == 2
        assert await a.recv() == '{"e":"24hrMiniTicker",'
        assert await b.recv() == '{"e":"24hrMiniTicker",'
        huge = "[" + ",".join(['{"e":"somethingElse"}'] * 20_000) + "]"
        assert await fake.send_raw(huge, conn=fake.connections[1]) == 1
        assert await b.recv() == huge
        await assert_nothing(a)
        assert await fake.send_raw(b"\x00\x01", conn=fake.connections[0], binary=True) == 1
        assert await a.recv() == b"\x00\x01"


@pytest.mark.asyncio
async def test_aexit_closes_every_connection_with_1001() -> None:
    fake = FakeBinance()
    async with fake, client(fake, "/market/ws") as ws, client(fake, "/ws") as legacy:
        await fake.wait_for_connections(2)
        kept = list(fake.connections)
        await fake.aclose()
        assert fake.connections == []
        assert fake.closed == kept
        assert {c.closed_code for c in kept} == {1001}
        for w in (ws, legacy):
            with pytest.raises(ConnectionClosedOK):
                await w.recv()


@pytest.mark.asyncio
async def test_wait_for_times_out_with_timeout_error() -> None:
    async with FakeBinance() as fake:
        with pytest.raises(TimeoutError):
            await fake.wait_for_connections(1, timeout=0.05)
        with pytest.raises(TimeoutError):
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"}, timeout=0.05)


# --- REST


@pytest.mark.asyncio
async def test_exchange_info_lists_trading_symbols_plus_one_settling() -> None:
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, httpx.AsyncClient(trust_env=False) as http:
        fake.set_symbols(["BTCUSDT", "ETHUSDT"])
        resp = await http.get(fake.rest_url + "/fapi/v1/exchangeInfo")
        assert resp.status_code == 200
        assert resp.headers["content-type"] == "application/json"
        symbols = resp.json()["symbols"]
        assert [(s["symbol"], s["status"]) for s in symbols] == [
            ("BTCUSDT", "TRADING"),
            ("ETHUSDT", "TRADING"),
            (SETTLING_SYMBOL, "SETTLING"),
        ]
        for s in symbols:
            assert (s["contractType"], s["quoteAsset"]) == ("PERPETUAL", "USDT")
        assert (await http.get(fake.rest_url + "/fapi/v1/ticker")).status_code == 404
        assert fake.stats.rest_requests == 2
        assert fake.stats.attempts == 0  # REST is not counted as WebSocket attempts


@pytest.mark.asyncio
async def test_spot_serves_stream_binance_coms_paths_and_limit() -> None:
    """``market="spot"``: no ``/market`` prefix, exchangeInfo under /api/v3, 5 messages/s."""
    async with (
        FakeBinance(market="spot", symbols=["BTCUSDT"]) as fake,
        httpx.AsyncClient(trust_env=False) as http,
    ):
        assert fake.max_incoming_per_s == 5
        resp = await http.get(fake.rest_url + "/api/v3/exchangeInfo")
        assert [(s["symbol"], s["status"]) for s in resp.json()["symbols"]] == [
            ("BTCUSDT", "TRADING"),
            (SETTLING_SYMBOL, "BREAK"),
        ]
        assert (await http.get(fake.rest_url + "/fapi/v1/exchangeInfo")).status_code == 404
        assert await handshake_status(fake, "/market/ws") == 404
        async with client(fake, "/stream?streams=btcusdt@miniTicker") as ws:
            await fake.wait_for_subscriptions({"btcusdt@miniTicker"})
            assert await fake.publish([BTC]) == 1
            assert await recv_json(ws) == {"stream": "btcusdt@miniTicker", "data": BTC}


@pytest.mark.asyncio
async def test_fail_rest_returns_the_status_until_switched_off() -> None:
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, httpx.AsyncClient(trust_env=False) as http:
        url = fake.rest_url + "/fapi/v1/exchangeInfo"
        fake.fail_rest()
        resp = await http.get(url)
        assert resp.status_code == 500
        assert resp.json()["code"] == -1000
        fake.fail_rest(status=418)
        assert (await http.get(url)).status_code == 418
        fake.fail_rest(False)
        assert (await http.get(url)).status_code == 200


@pytest.mark.asyncio
async def test_answer_rest_serves_the_body_as_it_is_until_switched_off() -> None:
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, httpx.AsyncClient(trust_env=False) as http:
        url = fake.rest_url + "/fapi/v1/exchangeInfo"
        fake.answer_rest(b"[[[]]]")
        resp = await http.get(url)
        assert (resp.status_code, resp.content) == (200, b"[[[]]]")
        assert resp.headers["content-type"] == "application/json"
        fake.answer_rest(None)
        assert "symbols" in (await http.get(url)).json()


@pytest.mark.asyncio
async def test_ticker_24hr_answers_each_markets_shape_from_the_last_published_ticker() -> None:
    """USD-M and spot answer one object, COIN-M a list of one with ``baseVolume`` in place of
    ``quoteVolume``; the numbers are the last ticker ``publish`` gave, carried by a stream or
    not."""
    sol = mini_ticker("SOLUSDT", "150.5", 1_700_000_000_000, open="140", volume=10)
    async with httpx.AsyncClient(trust_env=False) as http:
        for market, path in [
            ("usdm", "/fapi/v1/ticker/24hr"),
            ("spot", "/api/v3/ticker/24hr"),
            ("coinm", "/dapi/v1/ticker/24hr"),
        ]:
            async with FakeBinance(market=market, symbols=["BTCUSDT"]) as fake:
                assert await fake.publish([sol]) == 0  # nobody listens
                resp = await http.get(fake.rest_url + path, params={"symbol": "SOLUSDT"})
                assert resp.status_code == 200
                body = resp.json()
                one = body[0] if market == "coinm" else body
                assert isinstance(body, list) == (market == "coinm")
                assert one["symbol"] == "SOLUSDT"
                assert (one["lastPrice"], one["openPrice"], one["highPrice"]) == (
                    "150.5",
                    "140",
                    "150.5",
                )
                assert (one["lowPrice"], one["volume"]) == ("140", "10")
                assert one["priceChangePercent"] == "7.500"
                assert one["closeTime"] == 1_700_000_000_000
                assert one["baseVolume" if market == "coinm" else "quoteVolume"] == "1505.0"
                assert ("quoteVolume" in one) == (market != "coinm")
                assert ("bidPrice" in one) == (market == "spot")
                assert fake.stats.ticker_requests == ["SOLUSDT"]


@pytest.mark.asyncio
async def test_ticker_24hr_of_an_unknown_symbol_is_invalid_symbol() -> None:
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, httpx.AsyncClient(trust_env=False) as http:
        url = fake.rest_url + "/fapi/v1/ticker/24hr"
        resp = await http.get(url, params={"symbol": "NOPEUSDT"})
        assert (resp.status_code, resp.json()) == (400, {"code": -1121, "msg": "Invalid symbol."})
        listed = (await http.get(url, params={"symbol": "BTCUSDT"})).json()  # never published
        assert (listed["lastPrice"], listed["count"]) == ("0", 0)


@pytest.mark.asyncio
async def test_ticker_faults_fail_answer_garbage_and_hold_until_switched_off() -> None:
    """``fail_ticker`` and ``answer_ticker`` as ``fail_rest`` and ``answer_rest``, for the 24h
    ticker alone (exchangeInfo still answers); ``hold_ticker`` keeps requests unanswered."""
    async with FakeBinance(symbols=["BTCUSDT"]) as fake, httpx.AsyncClient(trust_env=False) as http:
        url = fake.rest_url + "/fapi/v1/ticker/24hr?symbol=BTCUSDT"
        fake.fail_ticker(status=502)
        resp = await http.get(url)
        assert (resp.status_code, resp.json()["code"]) == (502, -1000)
        assert (await http.get(fake.rest_url + "/fapi/v1/exchangeInfo")).status_code == 200
        fake.fail_ticker(False)
        fake.answer_ticker(b"{not json")
        assert (await http.get(url)).content == b"{not json"
        fake.answer_ticker(None)
        fake.fail_rest(status=503)  # every REST request: the ticker too
        assert (await http.get(url)).status_code == 503
        fake.fail_rest(False)
        fake.hold_ticker()
        held = [asyncio.create_task(http.get(url)) for _ in range(3)]
        await fake.wait_for(lambda: len(fake.stats.ticker_requests) == 6)
        assert not any(t.done() for t in held)
        fake.hold_ticker(False)
        assert [(await t).status_code for t in held] == [200, 200, 200]
        assert fake.stats.tickers_held_max == 3


# --- payload helper


def test_mini_ticker_uses_decimal_strings_and_derived_defaults() -> None:
    t = mini_ticker("BTCUSDT", 70000.1, 1_700_000_000_123, open=69000, volume=2.5)
    assert t == {
        "e": "24hrMiniTicker",
        "E": 1_700_000_000_123,
        "s": "BTCUSDT",
        "c": "70000.1",
        "o": "69000",
        "h": "70000.1",
        "l": "69000",
        "v": "2.5",
        "q": "175000.25",
    }
    tiny = mini_ticker("PEPEUSDT", 1e-08, 1, st=1)
    assert (tiny["c"], tiny["st"]) == ("0.00000001", 1)
    assert "st" not in t
