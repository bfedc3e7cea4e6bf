// Node.js peer: node:http server; each /fanout request calls the upstream n
// times concurrently through one shared keep-alive agent. With WORKERS > 1,
// node:cluster forks that many server processes sharing the port.
"use strict";
const cluster = require("node:cluster");
const http = require("node:http");

const upstream = new URL(process.env.UPSTREAM);
// The default agent closes every socket after its request (keepAlive false)
// and keeps at most 256 free ones: keep-alive on, no cap on sockets in use
// (maxSockets Infinity, the default) and room for the idle sockets of a
// 10,000-call fan-out (S3), so that no call reconnects.
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 10240 });

function fetchValue(ms) {
  const path = `/delay?ms=${encodeURIComponent(ms)}`;
  return new Promise((resolve, reject) => {
    http.get({ host: upstream.hostname, port: upstream.port, path, agent }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`upstream ${res.statusCode}`));
        else resolve(JSON.parse(body).value);
      });
    }).on("error", reject);
  });
}

async function fanout(query) {
  const n = Number(query.get("n"));
  const delays = (query.get("ms") ?? "0").split(",");
  if (!Number.isInteger(n) || n < 1 || (delays.length !== 1 && delays.length !== n)) {
    return [400, { error: "bad n or ms" }];
  }
  const calls = Array.from({ length: n }, (_, i) => fetchValue(delays[i % delays.length]));
  const values = await Promise.all(calls);
  return [200, { sum: values.reduce((a, b) => a + b, 0), n }];
}

function serve() {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    let [status, body] = [404, { error: "not found" }];
    if (url.pathname === "/fanout") {
      [status, body] = await fanout(url.searchParams).catch((e) => [502, { error: e.message }]);
    }
    const text = JSON.stringify(body);
    res.writeHead(status, {
      "Content-Type": "application/json",
      "Content-Length": Buffer.byteLength(text),
    });
    res.end(text);
  });
  server.listen({ host: "127.0.0.1", port: Number(process.env.PORT), backlog: 4096 });
}

const workers = Number(process.env.WORKERS || 1);
if (workers > 1 && cluster.isPrimary) {
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  serve();
}
