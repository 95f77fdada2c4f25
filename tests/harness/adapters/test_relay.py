"""`TcpRelay`: `cut()` for a drop, `interrupt(seconds)` for a transient disconnect."""

from __future__ import annotations

import asyncio

from presence_conformance.harness.adapters.relay import TcpRelay


async def echo_server() -> tuple[asyncio.Server, int]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(1024):
                writer.write(data)
                await writer.drain()
        except ConnectionError:  # the relay resets the upstream side
            pass
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_interrupt_resets_the_connection_and_holds_the_next_one() -> None:
    async def main() -> None:
        server, port = await echo_server()
        relay = TcpRelay("127.0.0.1", port)
        await relay.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", relay.port)
        writer.write(b"ping")
        assert await reader.read(4) == b"ping"
        loop = asyncio.get_running_loop()
        cut_at = loop.time()
        relay.interrupt(0.2)
        try:  # the client sees its connection go at once (a reset)
            gone = await reader.read(4)
        except ConnectionResetError:
            gone = b""
        assert gone == b""
        assert loop.time() - cut_at < 0.15
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", relay.port)
        writer2.write(b"back")
        assert await asyncio.wait_for(reader2.read(4), 2) == b"back"
        assert loop.time() - cut_at >= 0.19  # held until the interruption is over
        assert relay.accepted == 2
        writer.close()
        writer2.close()
        await relay.close()
        server.close()

    asyncio.run(asyncio.wait_for(main(), 10))
