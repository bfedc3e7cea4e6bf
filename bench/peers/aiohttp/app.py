"""aiohttp peer: aiohttp web server and one shared aiohttp.ClientSession.

Served by Gunicorn with aiohttp's GunicornUVLoopWebWorker (one uvloop event
loop per worker), as aiohttp's deployment docs suggest.
"""
import asyncio
import os

import aiohttp
from aiohttp import web


def delays(n, ms):
    """One delay per call: 'ms' is a single value or a comma list of n."""
    ms = ms.split(",")
    if n < 1 or len(ms) not in (1, n):
        raise web.HTTPBadRequest()
    return ms * n if len(ms) == 1 else ms


async def fetch_value(session, ms):
    async with session.get("/delay", params={"ms": ms}) as response:
        response.raise_for_status()
        return (await response.json())["value"]


async def fanout(request):
    n = int(request.query.get("n", "1"))
    session = request.app["session"]
    values = await asyncio.gather(
        *(fetch_value(session, ms) for ms in delays(n, request.query.get("ms", "0"))))
    return web.json_response({"sum": sum(values), "n": n})


async def client_session(app):
    # limit=0 (default 100) and limit_per_host=0: no cap on connections, a
    # fan-out of 10,000 calls must not queue. The connector keeps every idle
    # connection; keepalive_timeout (default 15 s) is raised beyond a run's
    # pauses so that no phase starts by reconnecting.
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=120)
    async with aiohttp.ClientSession(os.environ["UPSTREAM"], connector=connector) as session:
        app["session"] = session
        yield


app = web.Application()
app.cleanup_ctx.append(client_session)
app.router.add_get("/fanout", fanout)
