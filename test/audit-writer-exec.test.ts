import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AuditLog } from "../src/audit/audit-log.js";
import { ExecBroker } from "../src/gateway/exec.js";
import { GatehouseError } from "../src/protocol/errors.js";
import type { GatewayContext } from "../src/gateway/context.js";
import type { LiveSession } from "../src/gateway/sessions.js";
import type { ExecRequest, ExecResult } from "../src/protocol/messages.js";
import type { AuditWrite, Store } from "../src/store/types.js";
import type { Principal } from "../src/auth/roles.js";

/** A store whose commits the test completes (or fails) by hand, batch by batch. */
class HeldStore {
  readonly commits: { writes: AuditWrite[]; done: (error?: Error) => void }[] = [];
  appendAudit(writes: AuditWrite[]): Promise<number[]> {
    return new Promise((resolve, reject) => {
      this.commits.push({
        writes,
        done: (error) => (error ? reject(error) : resolve(writes.map((_, i) => i + 1))),
      });
    });
  }
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Waits (generously: up to ~10 s on a loaded machine) until `predicate` holds. */
async function until(what: string, predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !predicate(); i++) await new Promise((resolve) => setTimeout(resolve, 5));
  if (!predicate()) throw new Error(`never happened: ${what}`);
}

/**
 * `answerAfterMs`: the node answers by itself that long after the command is sent (a quick
 * command, answered in a later turn as over a network); `holdMs`: the broker's request hold.
 */
function broker(options: { answerAfterMs?: number; holdMs?: number } = {}) {
  const store = new HeldStore();
  const sent: ExecRequest[] = [];
  const finished: string[] = [];
  const session = {
    sessionId: "s1",
    deviceId: "dev1",
    connectedAt: new Date(),
    socket: {
      OPEN: 1,
      readyState: 1,
      send: (data: string, callback: (error?: Error) => void) => {
        const request = JSON.parse(data) as ExecRequest;
        sent.push(request);
        callback();
        const after = options.answerAfterMs;
        if (after !== undefined) setTimeout(() => exec.settle(session, answer(request.id)), after);
      },
    },
  } as unknown as LiveSession;
  const logger = pino({ level: "silent" });
  const now = () => new Date("2026-01-01T00:00:00Z");
  const ctx = {
    devices: { resolveNode: () => undefined },
    tokens: { listApiKeys: () => [] },
    sessions: { isOnline: () => true, all: () => [session], newestOf: () => session },
    audit: new AuditLog(store as unknown as Store, logger, now),
    metrics: { execFinished: (outcome: string) => finished.push(outcome) },
    logger,
    now,
  } as unknown as GatewayContext;
  const exec = options.holdMs === undefined ? new ExecBroker(ctx) : new ExecBroker(ctx, options.holdMs);
  const answer = (id: string): ExecResult => ({
    type: "exec_result",
    id,
    outcome: "completed",
    exitCode: 0,
    signal: null,
    stdout: Buffer.from("ok\n").toString("base64"),
    stderr: "",
    durationMs: 3,
  });
  return { store, sent, finished, session, exec, answer };
}

const operator = { subject: "operator-1" } as Principal;

describe("an exec's audit entries and its flight", () => {
  it("commits a quick command's request and result entries together, in order, and answers after", async () => {
    // A hold far longer than the answer takes, so that the test does not race the clock.
    const { store, sent, finished, exec } = broker({ answerAfterMs: 5, holdMs: 60_000 });
    let answered = false;
    const running = exec.run(operator, "dev1", "status", [], 5000).then((response) => {
      answered = true;
      return response;
    });
    await until("a commit", () => store.commits.length === 1);
    expect(sent).toHaveLength(1);
    expect(store.commits[0]!.writes.map((w) => w.event.type)).toEqual(["exec.request", "exec.result"]);
    expect(store.commits[0]!.writes[1]!.exec).toMatchObject({ execId: sent[0]!.id, outcome: "completed" });
    await turn();
    expect(answered).toBe(false);
    store.commits[0]!.done();
    expect(await running).toMatchObject({ execId: sent[0]!.id, exitCode: 0, stdout: "ok\n" });
    expect(store.commits).toHaveLength(1);
    expect(finished).toEqual(["completed"]);
  });

  it("sends the command while its request entry commits, and answers once both entries are durable", async () => {
    const { store, sent, finished, session, exec, answer } = broker();
    let answered = false;
    const running = exec.run(operator, "dev1", "status", [], 5000).then((response) => {
      answered = true;
      return response;
    });

    // The command is on its way while the request entry's commit is still open.
    await until("the command is sent", () => sent.length === 1);
    await until("the request entry is committing", () => store.commits.length === 1);
    expect(store.commits[0]!.writes[0]!.event.type).toBe("exec.request");

    // The node answers first; the operator still hears nothing while the request entry is not durable.
    exec.settle(session, answer(sent[0]!.id));
    await turn();
    store.commits[0]!.done();
    await until("the result entry is committing", () => store.commits.length === 2);
    const result = store.commits[1]!.writes[0]!;
    expect(result.event.type).toBe("exec.result");
    expect(result.exec).toMatchObject({ execId: sent[0]!.id, outcome: "completed", exitCode: 0 });
    await turn();
    expect(answered).toBe(false);

    store.commits[1]!.done();
    const response = await running;
    expect(response).toMatchObject({ execId: sent[0]!.id, exitCode: 0, stdout: "ok\n" });
    expect(finished).toEqual(["completed"]);
  });

  it("answers with an error, never a success, when the request entry cannot be made durable", async () => {
    const { store, sent, finished, session, exec, answer } = broker();
    const running = exec.run(operator, "dev1", "status", [], 5000).then(
      () => undefined,
      (error: unknown) => error,
    );
    await until("the command is sent", () => sent.length === 1);
    await until("the request entry is committing", () => store.commits.length === 1);
    exec.settle(session, answer(sent[0]!.id));
    const refused = new GatehouseError("unavailable", "the audit log could not be written (SQLITE_FULL)");
    // The batch fails, and so does its entry written alone (the audit log's retry).
    store.commits[0]!.done(refused);
    await until("the retry of the request entry", () => store.commits.length === 2);
    store.commits[1]!.done(refused);
    // What ran is still recorded: the result entry with its history row.
    await until("the result entry is committing", () => store.commits.length === 3);
    expect(store.commits[2]!.writes[0]!.exec).toMatchObject({ execId: sent[0]!.id });
    store.commits[2]!.done();

    const error = await running;
    expect(error).toBeInstanceOf(GatehouseError);
    expect(error).toMatchObject({ code: "unavailable" });
    expect(finished).toEqual(["unaudited"]);
  });

  it("answers with an error when the result entry cannot be made durable", async () => {
    const { store, sent, exec, session, answer } = broker();
    const running = exec.run(operator, "dev1", "status", [], 5000).then(
      () => undefined,
      (error: unknown) => error,
    );
    await until("the command is sent", () => sent.length === 1);
    await until("the request entry is committing", () => store.commits.length === 1);
    store.commits[0]!.done();
    exec.settle(session, answer(sent[0]!.id));
    await until("the result entry is committing", () => store.commits.length === 2);
    const failed = new Error("disk I/O error");
    store.commits[1]!.done(failed);
    await until("the retry of the result entry", () => store.commits.length === 3);
    store.commits[2]!.done(failed);
    expect(await running).toMatchObject({ code: "internal_error" });
  });
});
