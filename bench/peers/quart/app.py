"""Quart peer: one httpx.AsyncClient shared by all requests, served by Hypercorn
(uvloop worker: with the asyncio one, Hypercorn 0.13 leaves Nagle on and
keep-alive answers wait 40 ms for delayed ACKs)."""
import asyncio
import os

import httpx
from quart import Quart, abort, request

app = Quart(__name__)


def delays(n, ms):
    """One delay per call: 'ms' is a single value or a comma list of n."""
    ms = ms.split(",")
    if n < 1 or len(ms) not in (1, n):
        abort(400)
    return ms * n if len(ms) == 1 else ms


@app.before_serving
async def open_client():
    # httpx's defaults (100 connections, 20 kept alive, 5 s) would queue a
    # fan-out of 10,000 concurrent calls and close most connections after
    # each burst: no cap on either, and idle connections kept beyond a run's
    # pauses, so that no call reconnects.
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None,
                          keepalive_expiry=120)
    app.client = httpx.AsyncClient(base_url=os.environ["UPSTREAM"], limits=limits)


@app.after_serving
async def close_client():
    await app.client.aclose()


@app.get("/fanout")
async def fanout():
    n = request.args.get("n", 1, type=int)
    ms_list = delays(n, request.args.get("ms", "0"))
    responses = await asyncio.gather(
        *(app.client.get("/delay", params={"ms": ms}) for ms in ms_list))
    for response in responses:
        response.raise_for_status()
    return {"sum": sum(r.json()["value"] for r in responses), "n": n}
