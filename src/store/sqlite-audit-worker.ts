/**
 * The audit writer's thread (see sqlite-audit-writer.ts): its own better-sqlite3 connection to the
 * gateway's database, statements prepared once, and one transaction (one fsync) per batch.
 *
 * Each batch reads the chain's head inside its write transaction (BEGIN IMMEDIATE, so no other
 * connection can commit between the read and the inserts), then hashes and inserts every entry in
 * order with the same auditEntryHash as the in-thread store, so `audit verify` cannot tell which
 * path wrote an entry.
 */
import { parentPort, workerData } from "node:worker_threads";
import Database from "better-sqlite3";
import { GENESIS_HASH, auditEntryHash } from "../audit/chain.js";
import type { WriterBatch, WriterReply, WriterRequest, WriterStart } from "./sqlite-audit-writer.js";

const port = parentPort!;
const { file } = workerData as WriterStart;
const db = new Database(file);
db.pragma("busy_timeout = 5000");
db.pragma("journal_mode = WAL");
// FULL: the WAL is fsynced on every commit, so an entry reported durable survives kill -9 and power loss.
db.pragma("synchronous = FULL");

interface Statements {
  head: Database.Statement<[], { seq: number; hash: string }>;
  insertEvent: Database.Statement<unknown[]>;
  insertExec: Database.Statement<unknown[]>;
}

let statements: Statements | undefined;

/** Prepared on the first batch, not at start: the gateway migrates the schema before it audits. */
function prepared(): Statements {
  statements ??= {
    head: db.prepare("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1"),
    insertEvent: db.prepare(
      "INSERT INTO audit_events (ts, type, outcome, actor, subject, address, code, details, seq, prev_hash, hash) " +
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
    insertExec: db.prepare(
      "INSERT INTO exec_history (exec_id, device_id, requested_by, command, args, requested_at, finished_at, " +
        "outcome, exit_code, duration_ms, stdout_bytes, stderr_bytes, code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    ),
  };
  return statements;
}

const appendBatch = db.transaction((writes: WriterBatch): number[] => {
  const { head, insertEvent, insertExec } = prepared();
  const top = head.get();
  let seq = top?.seq ?? 0;
  let prevHash = top?.hash ?? GENESIS_HASH;
  const ids: number[] = [];
  for (const { event, detailsJson, exec } of writes) {
    if (exec)
      insertExec.run(
        exec.execId,
        exec.deviceId,
        exec.requestedBy,
        exec.command,
        exec.args,
        exec.requestedAt,
        exec.finishedAt,
        exec.outcome,
        exec.exitCode,
        exec.durationMs,
        exec.stdoutBytes,
        exec.stderrBytes,
        exec.code,
      );
    seq += 1;
    const hash = auditEntryHash({ ...event, seq, prevHash, detailsJson });
    const { lastInsertRowid } = insertEvent.run(
      event.ts,
      event.type,
      event.outcome,
      event.actor,
      event.subject,
      event.address,
      event.code,
      detailsJson,
      seq,
      prevHash,
      hash,
    );
    ids.push(Number(lastInsertRowid));
    prevHash = hash;
  }
  return ids;
});

port.on("message", (request: WriterRequest) => {
  if (request.type === "close") {
    db.close();
    port.close();
    return;
  }
  let reply: WriterReply;
  try {
    reply = { id: request.id, ids: appendBatch.immediate(request.writes) };
  } catch (error) {
    const { message, code } = error as { message?: string; code?: string };
    reply = { id: request.id, error: { message: String(message ?? error), code: code ?? null } };
  }
  port.postMessage(reply);
});
