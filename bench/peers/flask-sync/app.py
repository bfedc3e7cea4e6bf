"""Flask peer, the seed's approach: a sync view that runs the upstream calls
concurrently with asyncio.run(asyncio.gather(...)).

Served by Gunicorn with sync workers (flask-sync) or gthread workers
(flask-gthread). Each request runs its own event loop, so the HTTP client
cannot be shared between requests: it lives for one request.
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


async def fetch_values(ms_list):
    # A client, and its connections, for this request only: the event loop
    # it is bound to ends with the request, so no pool can outlive it. That
    # is the seed's design (4 connections per S2 request), kept as it is.
    async with httpx.AsyncClient(base_url=UPSTREAM) as client:
        responses = await asyncio.gather(
            *(client.get("/delay", params={"ms": ms}) for ms in ms_list))
    for response in responses:
        response.raise_for_status()
    return [response.json()["value"] for response in responses]


@app.get("/fanout")
def fanout():
    n = request.args.get("n", 1, type=int)
    values = asyncio.run(fetch_values(delays(n, request.args.get("ms", "0"))))
    return jsonify(sum=sum(values), n=n)
