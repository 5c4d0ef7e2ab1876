import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AuditLog } from "../src/audit/audit-log.js";
import { ExecBroker } from "../src/gateway/exec.js";
import { SessionRegistry, type LiveSession } from "../src/gateway/sessions.js";
import type { GatewayContext } from "../src/gateway/context.js";
import type { ExecRequest } from "../src/protocol/messages.js";
import type { Principal } from "../src/auth/roles.js";
import type { Store } from "../src/store/types.js";
import { liveSession } from "./fixtures/live-session.js";

/** A session whose socket records the commands sent to it (and never answers them). */
function session(deviceId: string, sessionId: string, connectedAt: string, sent: string[]): LiveSession {
  const socket = {
    OPEN: 1,
    readyState: 1,
    send: (data: string, callback?: (error?: Error) => void) => {
      sent.push(`${sessionId}:${(JSON.parse(data) as ExecRequest).command}`);
      callback?.();
    },
  };
  return liveSession(deviceId, sessionId, connectedAt, socket, { address: null });
}

describe("the session an exec goes to", () => {
  it("is the newest session of the named device, whatever other devices are online", () => {
    const sessions = new SessionRegistry();
    const sent: string[] = [];
    sessions.add(session("dev_a", "a_old", "2026-01-01T00:00:00Z", sent));
    sessions.add(session("dev_a", "a_new", "2026-01-01T00:05:00Z", sent));
    sessions.add(session("dev_a", "a_mid", "2026-01-01T00:02:00Z", sent));
    for (let i = 0; i < 50; i++) sessions.add(session(`dev_${i}`, `s${i}`, "2026-01-01T00:09:00Z", sent));
    expect(sessions.newestOf("dev_a")?.sessionId).toBe("a_new");
    expect(sessions.newestOf("dev_unknown")).toBeUndefined();
  });

  it("is found without listing every open session, and a device with none is node_offline", async () => {
    const sessions = new SessionRegistry();
    const sent: string[] = [];
    sessions.add(session("dev_a", "a_old", "2026-01-01T00:00:00Z", sent));
    sessions.add(session("dev_a", "a_new", "2026-01-01T00:05:00Z", sent));
    sessions.add(session("dev_b", "b_1", "2026-01-01T00:09:00Z", sent));
    // Listing every session per command is the cost this lookup exists to avoid.
    sessions.all = () => {
      throw new Error("all() listed every session for one command");
    };
    const logger = pino({ level: "silent" });
    const now = () => new Date("2026-01-01T00:10:00Z");
    const store = { appendAudit: () => new Promise<number[]>(() => undefined) };
    const ctx = {
      devices: {
        resolveNode: (id: string) =>
          id === "dev_c" ? { deviceId: "dev_c", name: "c", kind: "node" } : undefined,
      },
      tokens: { listApiKeys: () => [] },
      sessions,
      audit: new AuditLog(store as unknown as Store, logger, now),
      metrics: { execFinished: () => undefined },
      logger,
      now,
    } as unknown as GatewayContext;
    const exec = new ExecBroker(ctx);
    const principal = { subject: "admin" } as unknown as Principal;
    void exec.run(principal, "dev_a", "uptime", [], 60_000).catch(() => undefined);
    expect(sent).toEqual(["a_new:uptime"]);
    // An approved node with no session right now.
    await expect(exec.run(principal, "dev_c", "uptime", [], 60_000)).rejects.toMatchObject({
      code: "node_offline",
    });
  });
});
