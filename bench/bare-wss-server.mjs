/**
 * The bare baseline of the session benchmarks: a `ws` server over HTTPS with mutual TLS and
 * nothing else, in its own process (plain JavaScript, so it starts as fast as Node can).
 *
 *   node bench/bare-wss-server.mjs PORT PKI_DIR
 *
 * PKI_DIR holds ca.pem, server.pem and server.key (a gateway home's pki/). It serves
 *   GET /health                  {"status":"ok"}
 *   GET /api/v1/connect?id=N     a WebSocket session (a client certificate from the CA, else 401)
 *   POST /close?id=N             closes session N with 4403 device_revoked (the revoke baseline)
 * and on SIGTERM closes every session with 1012 "gateway restarting", as the gateway does, cuts
 * those that have not answered within 100 ms, and exits. It prints "listening PORT" when ready.
 */
/* global process, URL, setTimeout -- Node's globals (ESLint's config describes TypeScript files) */
import https from "node:https";
import { readFileSync } from "node:fs";
import path from "node:path";
import { WebSocketServer } from "ws";

const [port, pki] = process.argv.slice(2);
const read = (file) => readFileSync(path.join(pki, file));
const server = https.createServer({
  key: read("server.key"),
  cert: read("server.pem"),
  ca: read("ca.pem"),
  // As the gateway does: ask for a client certificate, decide per request (GET /health needs none).
  requestCert: true,
  rejectUnauthorized: false,
});
const wss = new WebSocketServer({ noServer: true, maxPayload: 1024 * 1024 });
const byId = new Map();

server.on("upgrade", (request, socket, head) => {
  if (!socket.authorized) {
    socket.end("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    return;
  }
  const id = new URL(request.url, "https://x").searchParams.get("id") ?? "";
  wss.handleUpgrade(request, socket, head, (ws) => {
    byId.set(id, ws);
    ws.on("close", () => {
      if (byId.get(id) === ws) byId.delete(id);
    });
    ws.on("error", () => undefined);
  });
});

server.on("request", (request, response) => {
  const url = new URL(request.url, "https://x");
  if (url.pathname === "/health") {
    response.setHeader("content-type", "application/json");
    response.end(JSON.stringify({ status: "ok", time: new Date().toISOString() }));
    return;
  }
  if (request.method === "POST" && url.pathname === "/close") {
    const ws = byId.get(url.searchParams.get("id") ?? "");
    if (ws) ws.close(4403, "device_revoked");
    response.setHeader("content-type", "application/json");
    response.end(JSON.stringify({ sessionsClosed: ws ? 1 : 0 }));
    return;
  }
  response.statusCode = 404;
  response.end();
});

process.once("SIGTERM", () => {
  const closing = [...wss.clients].map(
    (ws) =>
      new Promise((resolve) => {
        ws.once("close", resolve);
        ws.close(1012, "gateway restarting");
        setTimeout(() => ws.terminate(), 100).unref();
      }),
  );
  server.close();
  server.closeIdleConnections();
  void Promise.all(closing).then(() => process.exit(0));
});

server.listen(Number(port), "127.0.0.1", () => process.stdout.write(`listening ${port}\n`));
