#!/usr/bin/env python3
"""delay_relay.py - a latency-injecting TCP relay for tests and benches.

    delay_relay.py --listen PORT --to HOST:PORT --delay-ms D [--ready FILE]

Accepts on 127.0.0.1:PORT and relays every connection to HOST:PORT, holding
each chunk of bytes D ms (one way) before passing it on, in order, in both
directions: a round trip through the relay costs 2 D. Bandwidth is not
limited (loopback stands in for a fat, far link). Put one between students
and the broker's frontend and one between the broker's backend and the
workers (ZeroMQ reconnects through it like through any TCP hop). --ready
FILE is written once listening. Standard library only; ends on SIGTERM.
"""
import argparse
import asyncio
import signal
import time


async def pump(reader, writer, delay):
    """Reads chunks, stamps them, and writes each at stamp + delay."""
    q = asyncio.Queue()

    async def feed():
        try:
            while True:
                data = await reader.read(1 << 16)
                q.put_nowait((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            q.put_nowait((time.monotonic(), b""))

    task = asyncio.ensure_future(feed())
    try:
        while True:
            due, data = await q.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        task.cancel()
        try:
            writer.close()
        except OSError:
            pass


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", type=int, required=True)
    ap.add_argument("--to", required=True)
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--ready")
    a = ap.parse_args()
    host, port = a.to.rsplit(":", 1)
    delay = a.delay_ms / 1000.0

    async def on_conn(cr, cw):
        try:
            ur, uw = await asyncio.open_connection(host, int(port))
        except OSError:
            cw.close()
            return
        for w in (cw, uw):
            sock = w.get_extra_info("socket")
            if sock is not None:
                import socket
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(pump(cr, uw, delay), pump(ur, cw, delay))

    server = await asyncio.start_server(on_conn, "127.0.0.1", a.listen, reuse_address=True)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("ready\n")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    asyncio.run(main())
