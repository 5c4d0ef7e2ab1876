import { describe, expect, it } from "vitest";
import { EventHub, type EventTopic } from "../src/gateway/events.js";
import { FailureLog, MAX_RECENT_REFUSALS, type RecordedFailure } from "../src/gateway/failures.js";
import { SessionRegistry, type LiveSession } from "../src/gateway/sessions.js";

function failure(i: number): RecordedFailure {
  return {
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, i)).toISOString(),
    code: "cert_untrusted",
    address: `10.0.0.${i % 250}`,
    route: "/api/v1/connect",
    credential: "none",
  };
}

describe("the dashboard's change notices", () => {
  it("every listener hears each topic; one that throws hurts neither the emitter nor the others", () => {
    const hub = new EventHub();
    const heard: EventTopic[] = [];
    hub.subscribe(() => {
      throw new Error("a broken stream");
    });
    const stop = hub.subscribe((topic) => heard.push(topic));
    hub.emit("devices");
    hub.emit("audit");
    stop();
    hub.emit("nodes");
    expect(heard).toEqual(["devices", "audit"]);
    expect(hub.size).toBe(1);
  });

  it("the node session registry tells of a session added and removed, once each", () => {
    let changes = 0;
    const registry = new SessionRegistry(() => changes++);
    const session = { sessionId: "ses_1", deviceId: "dev_1" } as LiveSession;
    registry.add(session);
    registry.remove(session);
    registry.remove(session);
    expect(changes).toBe(2);
  });
});

describe("the recent refusals list", () => {
  it(`keeps the last ${MAX_RECENT_REFUSALS}, newest first, and tells of each one`, () => {
    let told = 0;
    const log = new FailureLog(() => told++);
    expect(log.recent(50)).toEqual([]);
    for (let i = 1; i <= 3; i++) log.record(failure(i));
    expect(log.recent(2).map((f) => f.at)).toEqual([failure(3).at, failure(2).at]);
    for (let i = 4; i <= MAX_RECENT_REFUSALS + 25; i++) log.record(failure(i));
    const all = log.recent(1000);
    expect(all).toHaveLength(MAX_RECENT_REFUSALS);
    expect(all[0]).toEqual(failure(MAX_RECENT_REFUSALS + 25));
    expect(all.at(-1)).toEqual(failure(26));
    expect(told).toBe(MAX_RECENT_REFUSALS + 25);
  });
});
