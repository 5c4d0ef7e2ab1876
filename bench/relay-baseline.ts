/**
 * The bare relay that exec-roundtrip measures the gateway against: what an exec round trip costs
 * with nothing but Node, TLS and `ws` on the path. An HTTPS server with mutual TLS (the operator's
 * client certificate checked as the gateway checks it: requestCert, verified against the CA)
 * takes POST /exec, sends the command as JSON over the WSS session of a minimal agent (also mTLS,
 * in its own process like the real node agent), and answers with the agent's JSON result, output
 * decoded from base64. No authentication beyond the TLS verdict, no audit, no history, no logging.
 *
 * The agent is this file run with `--relay-agent` (forked with this process's execArgv); it
 * answers every command with a status document of the size the real node agent's built-in
 * `status` sends.
 */
import { fork, type ChildProcess } from "node:child_process";
import https from "node:https";
import os from "node:os";
import type { TLSSocket } from "node:tls";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import WebSocket, { WebSocketServer } from "ws";

export interface RelayPem {
  ca: string;
  serverKey: string;
  serverCert: string;
  /** The agent's client certificate and key (any certificate the CA issued). */
  agentCert: string;
  agentKey: string;
}

export interface Relay {
  port: number;
  close(): Promise<void>;
}

interface Waiting {
  respond: (status: number, body: string) => void;
  timer: NodeJS.Timeout;
}

const AGENT_FLAG = "--relay-agent";

/** Starts the relay server and its agent; resolves once the agent's session is open. */
export async function startRelay(pem: RelayPem): Promise<Relay> {
  const server = https.createServer({
    key: pem.serverKey,
    cert: pem.serverCert,
    ca: pem.ca,
    requestCert: true,
    rejectUnauthorized: false,
  });
  const wss = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
  let agent: WebSocket | undefined;
  const waiting = new Map<string, Waiting>();
  let nextId = 0;

  server.on("upgrade", (request, socket, head) => {
    if (!(socket as TLSSocket).authorized) {
      socket.destroy();
      return;
    }
    wss.handleUpgrade(request, socket, head, (ws) => {
      agent = ws;
      ws.on("message", (data) => {
        const answer = JSON.parse(data.toString()) as { id: string; stdout: string; stderr: string };
        const entry = waiting.get(answer.id);
        if (!entry) return;
        waiting.delete(answer.id);
        clearTimeout(entry.timer);
        const stdout = Buffer.from(answer.stdout, "base64").toString("utf8");
        const stderr = Buffer.from(answer.stderr, "base64").toString("utf8");
        entry.respond(200, JSON.stringify({ ...answer, stdout, stderr }));
      });
    });
  });

  server.on("request", (request, response) => {
    const respond = (status: number, body: string) => {
      response.writeHead(status, { "content-type": "application/json" });
      response.end(body);
    };
    if (!(request.socket as TLSSocket).authorized) return respond(401, '{"error":"cert_untrusted"}');
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as {
        command: string;
        args?: string[];
        timeoutMs?: number;
      };
      if (!agent || agent.readyState !== WebSocket.OPEN) return respond(409, '{"error":"node_offline"}');
      const id = `exe_${(nextId++).toString(16).padStart(24, "0")}`;
      const timer = setTimeout(() => {
        waiting.delete(id);
        respond(504, '{"error":"exec_timeout"}');
      }, body.timeoutMs ?? 5000);
      waiting.set(id, { respond, timer });
      agent.send(
        JSON.stringify({
          type: "exec",
          id,
          command: body.command,
          args: body.args ?? [],
          timeoutMs: body.timeoutMs ?? 5000,
          maxOutputBytes: 16 * 1024,
        }),
      );
    });
  });

  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as AddressInfo).port;
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [AGENT_FLAG], {
    stdio: ["ignore", "ignore", "inherit", "ipc"],
    env: {
      ...process.env,
      RELAY_URL: `wss://127.0.0.1:${port}/connect`,
      RELAY_CA: pem.ca,
      RELAY_CERT: pem.agentCert,
      RELAY_KEY: pem.agentKey,
    },
  });
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`the relay agent exited (${code}) before connecting`)));
  });
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        child.kill("SIGTERM");
        for (const entry of waiting.values()) clearTimeout(entry.timer);
        for (const client of wss.clients) client.terminate();
        wss.close();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The minimal agent: connects with its client certificate and answers every command at once. */
function runAgent(): void {
  const socket = new WebSocket(process.env.RELAY_URL!, {
    ca: process.env.RELAY_CA!,
    cert: process.env.RELAY_CERT!,
    key: process.env.RELAY_KEY!,
    maxPayload: 64 * 1024,
  });
  socket.on("open", () => process.send?.("connected"));
  socket.on("message", (data) => {
    const request = JSON.parse(data.toString()) as { id: string };
    const status = {
      hostname: os.hostname(),
      platform: `${process.platform}-${process.arch}`,
      version: "relay",
      uptimeSeconds: Math.round(os.uptime()),
      loadAverage: os.loadavg(),
    };
    socket.send(
      JSON.stringify({
        type: "exec_result",
        id: request.id,
        outcome: "completed",
        exitCode: 0,
        signal: null,
        stdout: Buffer.from(JSON.stringify(status) + "\n").toString("base64"),
        stderr: "",
        durationMs: 0,
      }),
    );
  });
  socket.on("close", () => process.exit(0));
  socket.on("error", (error) => {
    process.stderr.write(`relay agent: ${error.message}\n`);
    process.exit(1);
  });
  process.on("SIGTERM", () => process.exit(0));
}

if (process.argv.includes(AGENT_FLAG)) runAgent();
