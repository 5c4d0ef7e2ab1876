import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import Database from "better-sqlite3";
import {
  cleanupAll,
  registeredNode,
  runCli,
  startTestGateway,
  type Running,
  type TestGateway,
} from "./harness.js";
import { startAgentAllowing, stopAgent } from "./agents.js";
import { waitConnected } from "./lifecycle-fixtures.js";

let gateway: TestGateway;
let deviceId: string;
let node: Running;

beforeAll(async () => {
  gateway = await startTestGateway();
  let nodeHome: string;
  ({ home: nodeHome, deviceId } = await registeredNode(gateway, "durable"));
  node = await startAgentAllowing(nodeHome, []);
});

afterAll(async () => {
  await stopAgent(node);
  await gateway.stop().catch(() => undefined);
  cleanupAll();
});

/** Execs of the built-in status with the admin credential, all on one keep-alive agent. */
function execStatus(agent: https.Agent, onAnswer: (status: number, body: string) => void): void {
  const request = https.request(
    `${gateway.url}/api/v1/nodes/${deviceId}/exec`,
    { method: "POST", agent, headers: { "content-type": "application/json" } },
    (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => onAnswer(response.statusCode ?? 0, Buffer.concat(chunks).toString("utf8")));
      response.on("error", () => undefined);
    },
  );
  request.on("error", () => undefined);
  request.end(JSON.stringify({ command: "status" }));
}

describe("an exec answered is an exec audited", () => {
  it("keeps both entries and the history row of every answered exec when the gateway is killed -9 at the answer", async () => {
    const admin = path.join(gateway.home, "admin");
    const agent = new https.Agent({
      keepAlive: true,
      ca: readFileSync(path.join(admin, "ca.pem")),
      cert: readFileSync(path.join(admin, "admin.pem")),
      key: readFileSync(path.join(admin, "admin.key")),
    });
    const answered: string[] = [];
    // Sixteen execs in flight at once, more following as answers come; the gateway is killed
    // (SIGKILL: no shutdown, no flush) in the same turn as the fortieth answer, while others are
    // mid-way through their commits.
    await new Promise<void>((resolve) => {
      let started = 0;
      const next = () => {
        started += 1;
        execStatus(agent, (status, body) => {
          if (status === 200) answered.push((JSON.parse(body) as { execId: string }).execId);
          if (answered.length === 40) {
            gateway.process.child.kill("SIGKILL");
            resolve();
          } else if (answered.length < 40 && started < 400) next();
        });
      };
      for (let i = 0; i < 16; i++) next();
    });
    await gateway.process.exited;
    agent.destroy();
    // Answers that were already on their way when the kill came count too: each was sent, so each
    // must be on disk.
    expect(answered.length).toBeGreaterThanOrEqual(40);

    // What the killed gateway left on disk, read as an auditor would.
    const db = new Database(path.join(gateway.home, "gatehouse.db"), { readonly: true });
    try {
      const entries = db.prepare("SELECT type, details FROM audit_events WHERE type LIKE 'exec.%'").all() as {
        type: string;
        details: string;
      }[];
      const byType = (type: string) =>
        new Set(
          entries
            .filter((e) => e.type === type)
            .map((e) => (JSON.parse(e.details) as { execId: string }).execId),
        );
      const requests = byType("exec.request");
      const results = byType("exec.result");
      const history = new Set(
        (db.prepare("SELECT exec_id FROM exec_history").all() as { exec_id: string }[]).map((r) => r.exec_id),
      );
      for (const execId of answered) {
        expect(requests.has(execId), `exec.request of ${execId}`).toBe(true);
        expect(results.has(execId), `exec.result of ${execId}`).toBe(true);
        expect(history.has(execId), `history row of ${execId}`).toBe(true);
      }
    } finally {
      db.close();
    }

    // The chain is whole, the gateway starts again on the file, goes on appending, and verifies.
    await gateway.restart();
    await waitConnected(node, 2);
    const again = await runCli(["nodes", "exec", deviceId, "--home", gateway.home, "--json", "--", "status"]);
    expect(again.code, again.stdout + again.stderr).toBe(0);
    const verified = await runCli(["audit", "verify", "--home", gateway.home]);
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/✓ audit log intact: \d+ entries/);

    // The node answered 40-odd status probes without a log line each at its default level (info);
    // the programs it runs are still logged one line each (test/e2e/exec.test.ts).
    const perProbe = node.logLines().filter((line) => /status/.test(String(line.msg)));
    expect(perProbe).toEqual([]);
  });
});
