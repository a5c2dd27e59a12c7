"""The Concur client over a real socket: what it sends, beyond the host policy (tests/security)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from concur_postback.concur.client import ConcurClient
from concur_postback.concur.notification import OAuthToken
from concur_postback.config import Settings

SET_COOKIE = b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nSet-Cookie: session=one-travellers\r\n"


async def cookie_server(heads: list[bytes]) -> asyncio.Server:
    """An HTTP server on localhost (a name: aiohttp keeps no cookie from an IP address) that answers
    every request with a cookie, and keeps each request's head."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(SET_COOKIE + b"Content-Length: 5\r\n\r\n<a/>\n")
                await writer.drain()
        except asyncio.IncompleteReadError:  # the client closed the connection
            writer.close()

    return await asyncio.start_server(answer, "localhost", 0)


def test_no_cookie_from_one_answer_goes_out_with_the_next_travellers_request(
    make_settings: Callable[..., Settings],
) -> None:
    """One client serves every traveller: a cookie Concur sets for one must not reach the next."""
    heads: list[bytes] = []

    async def main() -> None:
        server = await cookie_server(heads)
        port = server.sockets[0].getsockname()[1]
        settings = make_settings(concur_base_url=f"http://localhost:{port}", concur_allowed_hosts=[])
        client = ConcurClient(settings)
        try:
            for token in ("first-travellers-token", "second-travellers-token"):
                await client.get(f"http://localhost:{port}/api/travelprofile/v2.0/profile", OAuthToken(token))
        finally:
            await client.aclose()
            server.close()

    asyncio.run(main())
    assert len(heads) == 2
    assert b"second-travellers-token" in heads[1]
    assert all(b"cookie:" not in head.lower() for head in heads)
    assert b"user-agent: concur-postback" in heads[0].lower()
