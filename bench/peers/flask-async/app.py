"""Flask 2.2 peer with an `async def` view (Flask runs it through asgiref).

Served by Gunicorn gthread workers. Flask runs each async view in an event
loop of its own, so the HTTP client lives for one request.
"""
import asyncio
import os

import anyio._backends._asyncio  # noqa: F401 (anyio imports it lazily, which races in threads)
import httpx
from flask import Flask, abort, jsonify, request

UPSTREAM = os.environ["UPSTREAM"]
app = Flask(__name__)


def delays(n, ms):
    """One delay per call: 'ms' is a single value or a comma list of n."""
    ms = ms.split(",")
    if n < 1 or len(ms) not in (1, n):
        abort(400)
    return ms * n if len(ms) == 1 else ms


@app.get("/fanout")
async def fanout():
    n = request.args.get("n", 1, type=int)
    ms_list = delays(n, request.args.get("ms", "0"))
    # A client, and its connections, for this request only: the event loop
    # it is bound to ends with the request, so no pool can outlive it. That
    # is the seed's design (4 connections per S2 request), kept as it is.
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        responses = await asyncio.gather(
            *(client.get("/delay", params={"ms": ms}) for ms in ms_list))
    for response in responses:
        response.raise_for_status()
    return jsonify(sum=sum(r.json()["value"] for r in responses), n=n)
