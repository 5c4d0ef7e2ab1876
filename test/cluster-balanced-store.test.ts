// What instances behind a load balancer share through the store instead of memory, on both
// databases: spent re-issue challenges and dashboard links and sessions. Two stores on one
// database stand for two instances; each race has exactly one winner.
import { describe, expect, it } from "vitest";
import type { DashboardSessionRecord, Store } from "../src/store/index.js";
import { DIALECTS, eachDialectStore, type Dialect } from "./fixtures/store-dialects.js";

const T0 = "2026-01-01T00:00:00.000Z";
const at = (seconds: number) => new Date(Date.parse(T0) + seconds * 1000).toISOString();

function session(fingerprint: string, createdAt: string, over: Partial<DashboardSessionRecord> = {}) {
  return {
    fingerprint,
    role: "admin",
    createdBy: "device:admin",
    csrfToken: `csrf-${fingerprint}`,
    createdAt,
    lastUsedAt: createdAt,
    ...over,
  };
}

for (const { dialect, skip } of DIALECTS)
  describe.skipIf(skip)(`${dialect} store: what instances behind a balancer share`, () => suite(dialect));

function suite(dialect: Dialect): void {
  let one: Store;
  let other: Store;
  eachDialectStore(dialect, async (opened) => {
    one = opened.store;
    other = await opened.open();
  });

  it("spends a challenge once, even when two instances spend it at once, until it is pruned", async () => {
    const spent = await Promise.all([
      one.spendChallenge("ab01", at(60)),
      other.spendChallenge("ab01", at(60)),
      one.spendChallenge("ab01", at(60)),
    ]);
    expect(spent.filter(Boolean)).toHaveLength(1);
    expect(await other.spendChallenge("ab02", at(90))).toBe(true);
    expect(await one.pruneSpentChallenges(at(61))).toBe(1);
    expect(await one.spendChallenge("ab02", at(90))).toBe(false);
  });

  it("redeems a login link once across instances, and says why it is refused after", async () => {
    await one.putDashboardLink({
      linkHash: "h1",
      role: "viewer",
      createdBy: "key:key_a",
      expiresAt: at(300),
      used: 0,
    });
    const taken = await Promise.all([
      other.useDashboardLink("h1", at(10)),
      one.useDashboardLink("h1", at(10)),
    ]);
    expect(taken.filter((link) => link !== undefined)).toEqual([
      { linkHash: "h1", role: "viewer", createdBy: "key:key_a", expiresAt: at(300), used: 1 },
    ]);
    expect(await one.getDashboardLink("h1")).toMatchObject({ used: 1 });
    // An expired link is not used up by the attempt.
    await one.putDashboardLink({
      linkHash: "h2",
      role: "admin",
      createdBy: "device:admin",
      expiresAt: at(300),
      used: 0,
    });
    expect(await other.useDashboardLink("h2", at(300))).toBeUndefined();
    expect(await other.getDashboardLink("h2")).toMatchObject({ used: 0 });
    expect(await one.pruneDashboardLinks(at(301))).toBe(2);
    expect(await one.getDashboardLink("h1")).toBeUndefined();
  });

  it("keeps sessions for every instance: last use, logout, the newest few, the ended and a creator's", async () => {
    for (let i = 0; i < 5; i++) await one.putDashboardSession(session(`s${i}`, at(i)), 3);
    // Past 3 sessions the oldest logins end.
    expect(await other.getDashboardSession("s0")).toBeUndefined();
    expect(await other.getDashboardSession("s1")).toBeUndefined();
    expect(await other.getDashboardSession("s4")).toEqual(session("s4", at(4)));

    await other.touchDashboardSession("s2", at(100));
    await one.touchDashboardSession("s2", at(50)); // an older use never moves it back
    expect(await one.getDashboardSession("s2")).toMatchObject({ lastUsedAt: at(100) });

    expect(await other.deleteDashboardSession("s3")).toBe(true);
    expect(await one.deleteDashboardSession("s3")).toBe(false);

    await one.putDashboardSession(session("k1", at(10), { createdBy: "key:key_gone" }), 10);
    expect(await other.deleteDashboardSessions({ createdBy: "key:key_gone" })).toBe(1);
    expect(await other.deleteDashboardSessions({})).toBe(0);
    expect(await one.deleteDashboardSessions({ idleBefore: at(60) })).toBe(1); // s4, last used at 4 s
    expect(await one.getDashboardSession("s2")).toBeDefined();
    expect(await one.deleteDashboardSessions({ createdBefore: at(3) })).toBe(1); // s2, made at 2 s
  });
}
