import { afterEach, beforeEach, describe, expect, it } from "vitest";
import os from "node:os";
import path from "node:path";
import { mkdtempSync, rmSync } from "node:fs";
import { openSqliteStore, type Store } from "../src/store/index.js";
import { loginRefusedPage } from "../src/gateway/dashboard/login-page.js";
import {
  filtersFromHash,
  hashForFilters,
  resolveAuditFilters,
  resolveDevice,
} from "../web/src/audit-filters.js";
import { nextRetryDelay } from "../web/src/live.js";
import { asSentence } from "../web/src/format.js";

/** The dashboard's pure parts: audit filters as typed, the stream's back-off, error sentences, the refused-link page. */

const DEVICES = [
  { deviceId: "3f2a9c1e77aa01", name: "laptop" },
  { deviceId: "9b0c44d2e1ff02", name: "desktop" },
  { deviceId: "9b0c5500aa0003", name: "Twin" },
  { deviceId: "c0ffee0000aa04", name: "twin" },
  { deviceId: "d00d000000aa05", name: "twin" },
];

describe("audit filters as a person types them", () => {
  it("a device name, an id or its shown prefix becomes the device; the actor becomes device:<id>", () => {
    expect(resolveAuditFilters({ actor: "laptop", device: "", kind: "" }, DEVICES).query).toEqual({
      actor: "device:3f2a9c1e77aa01",
    });
    expect(resolveAuditFilters({ actor: "", device: "desktop", kind: "" }, DEVICES).query).toEqual({
      subject: "9b0c44d2e1ff02",
    });
    expect(resolveAuditFilters({ actor: "", device: "3f2a9c1e", kind: "" }, DEVICES).query).toEqual({
      subject: "3f2a9c1e77aa01",
    });
    expect(
      resolveAuditFilters({ actor: "", device: "device:9b0c44d2e1ff02", kind: "" }, DEVICES).query,
    ).toEqual({
      subject: "9b0c44d2e1ff02",
    });
    expect(resolveAuditFilters({ actor: "LAPTOP", device: "", kind: "" }, DEVICES).query.actor).toBe(
      "device:3f2a9c1e77aa01",
    );
  });

  it("a stored actor string goes as typed", () => {
    for (const actor of ["dashboard:b6c9ab1e5901", "key:k1", "device:3f2a9c1e77aa01"])
      expect(resolveAuditFilters({ actor, device: "", kind: "" }, DEVICES).query).toEqual({ actor });
  });

  it("a name two devices share is ambiguous, never a guess; so is a prefix of two ids", () => {
    const twin = resolveAuditFilters({ actor: "", device: "twin", kind: "" }, DEVICES);
    expect(twin.query).toEqual({});
    expect(twin.ambiguous).toEqual([{ field: "device", value: "twin", count: 2 }]);
    expect(resolveDevice("9b0c", DEVICES)).toEqual({ ambiguous: 2 });
    // The exact name wins over the same name in another case.
    expect(resolveDevice("Twin", DEVICES)).toEqual({ id: "9b0c5500aa0003" });
  });

  it("the kind goes as typed; the filters round-trip through the URL hash", () => {
    expect(resolveAuditFilters({ actor: "", device: "", kind: " device " }, DEVICES).query).toEqual({
      type: "device",
    });
    const hash = hashForFilters({ actor: "dashboard:b6", device: "laptop", kind: "device." });
    expect(hash).toBe("#/audit?actor=dashboard%3Ab6&device=laptop&kind=device.");
    expect(filtersFromHash(hash)).toEqual({ actor: "dashboard:b6", device: "laptop", kind: "device." });
    expect(hashForFilters({ actor: "", device: "", kind: "" })).toBe("#/audit");
    expect(filtersFromHash("#/audit")).toEqual({ actor: "", device: "", kind: "" });
  });
});

describe("the live stream's back-off and the error banner's sentences", () => {
  it("waits 5 s, then doubles up to 60 s", () => {
    const waits: number[] = [];
    let delay: number | undefined;
    for (let i = 0; i < 7; i++) waits.push((delay = nextRetryDelay(delay)));
    expect(waits).toEqual([5_000, 10_000, 20_000, 40_000, 60_000, 60_000, 60_000]);
  });

  it("a description without a full stop gets one, so the hint never runs into it", () => {
    expect(asSentence("This credential's role node does not grant it")).toBe(
      "This credential's role node does not grant it.",
    );
    expect(asSentence("Already a sentence.")).toBe("Already a sentence.");
  });
});

describe("the refused login link's page", () => {
  it("links the dashboard's stylesheet and shows the command as code, escaped", () => {
    const page = loginRefusedPage(
      "This login link has no token.",
      "Run `gatehouse dashboard` again <now>.",
      "/dashboard/assets/app-ABC.css",
    );
    expect(page).toContain('<link rel="stylesheet" href="/dashboard/assets/app-ABC.css">');
    expect(page).toContain("Run <code>gatehouse dashboard</code> again &#60;now&#62;.");
    expect(page).not.toContain("`");
    expect(page).not.toContain("style=");
  });
});

describe("the audit filters in the store", () => {
  let dir: string;
  let store: Store;

  beforeEach(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), "gatehouse-polish-"));
    store = await openSqliteStore(path.join(dir, "audit.db"));
    await store.migrate();
    const entry = (type: string, subject: string) => ({
      event: {
        ts: "2026-01-01T00:00:00.000Z",
        type,
        outcome: "success" as const,
        actor: "device:admin1",
        subject,
        address: null,
        code: null,
        details: {},
      },
    });
    await store.appendAudit([
      entry("device.approve", "d1"), // 1
      entry("session.open", "device:d1"), // 2
      entry("device", "d2"), // 3
      entry("devices.other", "d1"), // 4
      entry("device.revoke", "d2"), // 5
    ]);
  });

  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ids = async (query: Parameters<Store["listAudit"]>[0]) =>
    (await store.listAudit(query)).map((entry) => entry.id);

  it("a device's entries whose subject is <id> or device:<id>, in both orders", async () => {
    expect(await ids({ subject: "d1" })).toEqual([1, 2, 4]);
    expect(await ids({ subject: "device:d1" })).toEqual([1, 2, 4]);
    expect(await ids({ subject: "d1", order: "desc", limit: 2 })).toEqual([4, 2]);
    expect(await ids({ subject: "d1", order: "desc", beforeId: 4 })).toEqual([2, 1]);
  });

  it("a kind without a dot is that type and everything under it; with a dot, the prefix", async () => {
    expect(await ids({ type: "device" })).toEqual([1, 3, 5]);
    expect(await ids({ type: "device." })).toEqual([1, 5]);
    expect(await ids({ type: "device.approve" })).toEqual([1]);
    expect(await ids({ type: "device", subject: "d2", order: "desc" })).toEqual([5, 3]);
  });
});
