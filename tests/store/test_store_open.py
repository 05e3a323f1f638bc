"""Opening a store whose database cannot be reached: a clear error, in bounded time."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from rtc_annotator.store import Store
from rtc_annotator.store.repository import StoreError


async def test_a_server_that_never_answers_is_an_error_after_the_connect_timeout() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept the connection, never say a word

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    start = time.monotonic()
    try:
        with pytest.raises(StoreError) as info:
            await Store.open(f"postgresql+asyncpg://u@127.0.0.1:{port}/db", connect_timeout=0.5)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert time.monotonic() - start < 5
    assert accepted  # it did connect, then waited for the server's reply
    assert "did not answer in time" in info.value.message


async def test_a_closed_port_is_an_error_naming_the_failure() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreError) as info:
        await Store.open(f"postgresql+asyncpg://u@127.0.0.1:{port}/db", connect_timeout=2)
    # the system's reason and the address, not the timeout's words
    assert info.value.message.startswith("cannot reach the database: ")
    assert f"127.0.0.1', {port}" in info.value.message
    assert "did not answer" not in info.value.message
