import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import Database from "better-sqlite3";
import { runCli, runJson } from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";

interface AuditRow {
  type: string;
  address: string | null;
  code: string | null;
  details: string;
}

const gateway = gatewayForFile();

/** Every audit row, read from the database file itself (what a flood costs on disk). */
function auditRows(): AuditRow[] {
  const db = new Database(path.join(gateway.home, "gatehouse.db"), { readonly: true });
  try {
    return db
      .prepare("SELECT type, address, code, details FROM audit_events ORDER BY id")
      .all() as AuditRow[];
  } finally {
    db.close();
  }
}

/** `count` anonymous GETs over real HTTPS on keep-alive connections, `concurrency` at a time. */
async function refusedRequests(count: number, concurrency: number): Promise<Map<number, number>> {
  const agent = new https.Agent({
    keepAlive: true,
    maxSockets: concurrency,
    ca: readFileSync(path.join(gateway.home, "pki/ca.pem"), "utf8"),
  });
  const statuses = new Map<number, number>();
  let next = 0;
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const request = https.get(`${gateway.url}/api/v1/devices`, { agent }, (response) => {
        response.resume();
        response.on("end", () => {
          statuses.set(response.statusCode!, (statuses.get(response.statusCode!) ?? 0) + 1);
          resolve();
        });
      });
      request.on("error", reject);
    });
  const worker = async () => {
    while (next < count) {
      next += 1;
      await one();
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  agent.destroy();
  return statuses;
}

describe("a flood of refused anonymous requests", () => {
  it("costs a few audit rows, and a clean stop writes the summary that counts them all", async () => {
    const before = auditRows().length;
    const statuses = await refusedRequests(1000, 8);
    expect([...statuses]).toEqual([[401, 1000]]);

    // The refusals were answered; their rows are a handful, not a thousand.
    const during = auditRows().length - before;
    expect(during).toBeLessThanOrEqual(20);

    await gateway.stop();
    const added = auditRows().slice(before);
    // A window boundary may fall inside the flood: then two windows, each a few rows and a summary.
    expect(added.length).toBeLessThanOrEqual(20);
    const mine = added.filter((row) => row.address === "127.0.0.1" && row.code === "missing_credentials");
    const individual = mine.filter((row) => row.type === "auth.refused");
    const summaries = mine.filter((row) => row.type === "auth.refused.summary");
    expect(individual.length).toBeGreaterThan(0);
    expect(summaries.length).toBeGreaterThan(0);
    const details = summaries.map((row) => JSON.parse(row.details) as Record<string, unknown>);
    expect(details[0]).toMatchObject({ routes: ["/api/v1/devices"], credentials: ["none"] });
    // Every refusal is accounted for: the ones written as they came plus the counted ones.
    const counted = details.reduce((sum, d) => sum + (d.count as number), 0);
    expect(individual.length + counted).toBe(1000);

    await gateway.restart();
    const verify = await runJson<{ ok: boolean; checked: number }>([
      "audit",
      "verify",
      "--home",
      gateway.home,
    ]);
    expect(verify.ok).toBe(true);
    const tail = await runCli(["audit", "tail", "-n", "50", "--home", gateway.home]);
    expect(tail.code).toBe(0);
    expect(tail.stdout).toMatch(
      /auth\.refused\.summary missing_credentials {2}from 127\.0\.0\.1 {2}\(\d+ more, [\d:]+–[\d:]+; on \/api\/v1\/devices; credential none\)/,
    );
  });
});
