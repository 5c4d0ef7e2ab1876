import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import https from "node:https";
import path from "node:path";
import { GATEWAY_FILES } from "../../src/config/index.js";
import { openSqliteStore } from "../../src/store/index.js";
import { cleanupAll, runCli, startTestGateway, type TestGateway } from "./harness.js";

/**
 * GET /api/v1/audit newest first (order=desc, beforeId) on a real gateway over TLS, and
 * `gatehouse audit tail`/`export`, which must show the same entries as before.
 */

interface Entry {
  id: number;
  seq: number;
  type: string;
  subject: string | null;
  actor: string | null;
}

let gateway: TestGateway;
let ca: string;
let admin: { cert: string; key: string };
/** Every entry in the log once the fillers are written, oldest first. */
let all: Entry[];

function get(route: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = https.request(gateway.url + route, { agent: false, ca, ...admin }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () =>
        resolve({
          status: response.statusCode ?? 0,
          body: JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>,
        }),
      );
      response.on("error", reject);
    });
    req.on("error", reject);
    req.end();
  });
}

async function entries(route: string): Promise<Entry[]> {
  const answer = await get(route);
  expect(answer.status, route).toBe(200);
  return answer.body.entries as Entry[];
}

const ids = (list: Entry[]) => list.map((entry) => entry.id);

beforeAll(async () => {
  gateway = await startTestGateway();
  ca = readFileSync(path.join(gateway.home, GATEWAY_FILES.adminCa), "utf8");
  admin = {
    cert: readFileSync(path.join(gateway.home, GATEWAY_FILES.adminCert), "utf8"),
    key: readFileSync(path.join(gateway.home, GATEWAY_FILES.adminKey), "utf8"),
  };
  // A log longer than one page of the API (1000): 1,200 chained entries on two subjects,
  // written through the store beside the running gateway (SQLite in WAL mode allows it).
  const store = await openSqliteStore(path.join(gateway.home, GATEWAY_FILES.database));
  try {
    await store.appendAudit(
      Array.from({ length: 1200 }, (_, n) => ({
        event: {
          ts: new Date(Date.UTC(2026, 0, 1, 0, 0, 0, n)).toISOString(),
          type: n % 2 ? "filler.odd" : "filler.even",
          outcome: "success" as const,
          actor: n % 3 ? "admin" : "robot",
          subject: n % 2 ? "s-odd" : "s-even",
          address: null,
          code: null,
          details: { n },
        },
      })),
    );
  } finally {
    await store.close();
  }
  all = [];
  for (let afterId = 0; ;) {
    const page = await entries(`/api/v1/audit?afterId=${afterId}&limit=1000`);
    if (page.length === 0) break;
    all.push(...page);
    afterId = page[page.length - 1]!.id;
  }
}, 120_000);

afterAll(async () => {
  await gateway?.stop();
  cleanupAll();
});

describe("GET /api/v1/audit newest first", () => {
  it("answers the newest page first and pages back with beforeId to the first entry", async () => {
    expect(all.length).toBeGreaterThan(1200);
    const newestFirst = ids(all).reverse();
    expect(ids(await entries("/api/v1/audit?order=desc&limit=5"))).toEqual(newestFirst.slice(0, 5));
    const walked: number[] = [];
    let route = "/api/v1/audit?order=desc&limit=500";
    for (;;) {
      const page = await entries(route);
      if (page.length === 0) break;
      walked.push(...ids(page));
      route = `/api/v1/audit?order=desc&limit=500&beforeId=${page[page.length - 1]!.id}`;
    }
    expect(walked).toEqual(newestFirst);
  });

  it("combines with the subject, actor and type filters", async () => {
    const expected = (keep: (entry: Entry) => boolean) => ids(all.filter(keep)).reverse();
    const odd = await entries("/api/v1/audit?order=desc&subject=s-odd&limit=3");
    expect(ids(odd)).toEqual(expected((e) => e.subject === "s-odd").slice(0, 3));
    const next = await entries(`/api/v1/audit?order=desc&subject=s-odd&limit=3&beforeId=${odd[2]!.id}`);
    expect(ids(next)).toEqual(expected((e) => e.subject === "s-odd").slice(3, 6));
    const robotEven = await entries("/api/v1/audit?order=desc&actor=robot&type=filler.even&limit=1000");
    expect(ids(robotEven)).toEqual(expected((e) => e.actor === "robot" && e.type === "filler.even"));
    const prefix = await entries(`/api/v1/audit?order=desc&type=filler.&limit=4&beforeId=${all[10]!.id}`);
    expect(ids(prefix)).toEqual(
      expected((e) => e.type.startsWith("filler.") && e.id < all[10]!.id).slice(0, 4),
    );
  });

  it("keeps oldest-first paging as the default", async () => {
    expect(ids(await entries("/api/v1/audit?limit=3"))).toEqual(ids(all.slice(0, 3)));
    expect(ids(await entries(`/api/v1/audit?order=asc&afterId=${all[4]!.id}&limit=2`))).toEqual(
      ids(all.slice(5, 7)),
    );
  });

  it("refuses a cursor of the other order or a bad order with invalid_request, naming the parameter", async () => {
    const refusals: [string, RegExp][] = [
      ["order=desc&afterId=3", /afterId.*order=desc.*beforeId/],
      ["beforeId=5", /beforeId.*order=desc/],
      ["order=asc&beforeId=5", /beforeId.*order=desc/],
      ["order=newest", /order must be asc or desc/],
      ["order=desc&beforeId=0", /beforeId/],
      ["order=desc&beforeId=abc", /beforeId/],
      ["order=desc&limit=0", /limit/],
    ];
    for (const [query, description] of refusals) {
      const answer = await get(`/api/v1/audit?${query}`);
      expect(answer.status, query).toBe(400);
      expect(answer.body.error, query).toBe("invalid_request");
      expect(answer.body.error_description, query).toMatch(description);
    }
  });
});

describe("gatehouse audit tail and export", () => {
  it("tail -n shows the newest entries oldest first, across more than one page", async () => {
    for (const n of [3, 1100]) {
      const tail = await runCli(["audit", "tail", "-n", String(n), "--home", gateway.home, "--json"]);
      expect(tail.code, tail.stderr).toBe(0);
      const shown = (JSON.parse(tail.stdout) as { entries: Entry[] }).entries;
      expect(ids(shown)).toEqual(ids(all.slice(-n)));
    }
    const none = await runCli(["audit", "tail", "-n", "0", "--home", gateway.home, "--json"]);
    expect(JSON.parse(none.stdout)).toEqual({ entries: [] });
    const text = await runCli(["audit", "tail", "-n", "2", "--home", gateway.home]);
    expect(text.stdout.trim().split("\n")).toHaveLength(2);
    expect(text.stdout).toContain(`#${all.at(-1)!.seq} `);
    const bad = await runCli(["audit", "tail", "-n", "ten", "--home", gateway.home]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain("--lines ten");
  });

  it("export still gives every entry, oldest first", async () => {
    const exported = await runCli(["audit", "export", "--home", gateway.home]);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = exported.stdout.trim().split("\n");
    expect(lines.map((line) => (JSON.parse(line) as Entry).id)).toEqual(ids(all));
  });
});
