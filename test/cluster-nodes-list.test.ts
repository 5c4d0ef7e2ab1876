/**
 * The one list of online nodes (src/gateway/cluster/online-nodes.ts), over a real SessionRegistry:
 * a device is listed once, by its newest session, whether its other sessions are here (a
 * connection that went away unseen) or on another instance (one killed a moment ago); and an
 * instance that cannot read the shared sessions table still lists its own nodes and says so.
 * The same with real processes, HAProxy and PostgreSQL: test/e2e/cluster-nodes-list.test.ts.
 */
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { listOnlineNodes } from "../src/gateway/cluster/online-nodes.js";
import { ExecRelay, type RemoteSession } from "../src/gateway/cluster/exec-relay.js";
import type { GatewayContext } from "../src/gateway/context.js";
import { SessionRegistry } from "../src/gateway/sessions.js";
import { GatehouseError } from "../src/protocol/errors.js";
import { instanceRecord, sessionRecord } from "./fixtures/store.js";
import { liveSession } from "./fixtures/live-session.js";

const HERE = "gi_aaaaaaaaaaaaaaaa";
const DEAD = "gi_bbbbbbbbbbbbbbbb";
const OTHER = "gi_cccccccccccccccc";

const session = (deviceId: string, sessionId: string, connectedAt: string) =>
  liveSession(deviceId, sessionId, connectedAt);

function remote(deviceId: string, sessionId: string, connectedAt: string, instanceId: string): RemoteSession {
  return {
    session: sessionRecord(sessionId, deviceId, { instanceId, address: "127.0.0.9", connectedAt }),
    instance: instanceRecord(instanceId, {
      url: "https://127.0.0.1:2",
      listen: "127.0.0.1:2",
      startedAt: connectedAt,
      heartbeatAt: connectedAt,
    }),
  };
}

function context(sessions: SessionRegistry, relay?: { remoteSessions(): Promise<RemoteSession[]> }) {
  return {
    sessions,
    now: () => new Date("2026-01-01T01:00:00Z"),
    logger: pino({ level: "silent" }),
    devices: { get: () => undefined },
    ...(relay ? { relay: { instanceId: HERE, ...relay } } : {}),
  } as unknown as GatewayContext;
}

describe("the online nodes", () => {
  it("alone: one row per device, its newest session, oldest connection first", async () => {
    const sessions = new SessionRegistry();
    sessions.add(session("dev_a", "a_left_behind", "2026-01-01T00:00:00Z"));
    sessions.add(session("dev_b", "b_1", "2026-01-01T00:01:00Z"));
    sessions.add(session("dev_a", "a_now", "2026-01-01T00:05:00Z"));
    const listed = await listOnlineNodes(context(sessions));
    expect(listed.nodes.map((n) => [n.deviceId, n.sessionId, n.instanceId])).toEqual([
      ["dev_b", "b_1", undefined],
      ["dev_a", "a_now", undefined],
    ]);
    expect(listed).not.toHaveProperty("incomplete");
  });

  it("with several instances: a device on a killed instance and here is listed once, here", async () => {
    const sessions = new SessionRegistry();
    sessions.add(session("dev_a", "a_here", "2026-01-01T00:30:00Z"));
    const listed = await listOnlineNodes(
      context(sessions, {
        remoteSessions: async () => [
          remote("dev_a", "a_on_dead", "2026-01-01T00:00:00Z", DEAD),
          remote("dev_c", "c_there", "2026-01-01T00:10:00Z", OTHER),
          remote("dev_c", "c_moved", "2026-01-01T00:20:00Z", DEAD),
        ],
      }),
    );
    expect(listed.nodes.map((n) => [n.deviceId, n.sessionId, n.instanceId])).toEqual([
      ["dev_c", "c_moved", DEAD],
      ["dev_a", "a_here", HERE],
    ]);
  });

  it("with the database away: this instance's nodes, and what could not be read", async () => {
    const sessions = new SessionRegistry();
    sessions.add(session("dev_a", "a_here", "2026-01-01T00:30:00Z"));
    const listed = await listOnlineNodes(
      context(sessions, {
        remoteSessions: () =>
          Promise.reject(
            new GatehouseError("unavailable", "PostgreSQL at postgres://gh@db:5432/gh: ECONNREFUSED"),
          ),
      }),
    );
    expect(listed.nodes.map((n) => [n.deviceId, n.instanceId])).toEqual([["dev_a", HERE]]);
    expect(listed.incomplete).toMatchObject({ error: "unavailable" });
    expect(listed.incomplete?.error_description).toContain(HERE);
    expect(listed.incomplete?.error_description).toContain("ECONNREFUSED");
  });

  it("with the database away for longer than the stale delay: still says the others could not be read", async () => {
    // Nobody's heartbeat is read while the database is away, so after 10 s every other instance
    // looks gone: the list must not take that for "there are no others".
    const relay = new ExecRelay({
      store: {
        listOpenSessions: () =>
          Promise.reject(new GatehouseError("unavailable", "PostgreSQL at db: ECONNREFUSED")),
        listInstances: () =>
          Promise.reject(new GatehouseError("unavailable", "PostgreSQL at db: ECONNREFUSED")),
      },
      cluster: { instanceId: HERE, liveInstances: () => [] },
      signer: () => {
        throw new Error("nothing is relayed here");
      },
      caPems: () => [],
      now: () => new Date("2026-01-01T01:00:00Z"),
      logger: pino({ level: "silent" }),
    });
    const sessions = new SessionRegistry();
    sessions.add(session("dev_a", "a_here", "2026-01-01T00:30:00Z"));
    const ctx = { ...(context(sessions) as object), relay } as unknown as GatewayContext;
    const listed = await listOnlineNodes(ctx);
    expect(listed.nodes.map((n) => [n.deviceId, n.instanceId])).toEqual([["dev_a", HERE]]);
    expect(listed.incomplete).toMatchObject({ error: "unavailable" });
    relay.close();
  });
});
