/**
 * Audit appends off the event loop: a worker thread (sqlite-audit-worker.ts) owns a second
 * connection to the gateway's SQLite file and appends each batch of entries (with their
 * exec_history rows) in one transaction, with statements prepared once. The gateway's thread only
 * posts the batch and later settles its promise, so a commit's fsync never blocks a request.
 *
 * Failures never hang a caller: a batch the database refuses rejects with `unavailable`, and a
 * worker that dies rejects every batch it held; the next append starts a new worker.
 */
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { GatehouseError } from "../protocol/errors.js";
import type { AuditEventInput, AuditWrite, ExecRecord } from "./types.js";

/** What the worker is started with. */
export interface WriterStart {
  file: string;
}

/**
 * One entry as the worker receives it: the details already encoded as the JSON text that is stored
 * and hashed, so the text cannot differ from what the in-thread store would have written.
 */
export type WriterBatch = {
  event: Omit<AuditEventInput, "details">;
  detailsJson: string;
  exec?: ExecRecord;
}[];

export type WriterRequest = { type: "append"; id: number; writes: WriterBatch } | { type: "close" };

export type WriterReply =
  { id: number; ids: number[] } | { id: number; error: { message: string; code: string | null } };

interface Waiting {
  resolve: (ids: number[]) => void;
  reject: (error: GatehouseError) => void;
}

/**
 * The URL of the worker's module and how to start it. Built (dist/…/*.js) it is started as is;
 * from TypeScript sources (tests, benchmarks run through tsx) the thread first loads tsx.
 */
function workerSource(): { source: string | URL; eval: boolean } {
  const self = import.meta.url;
  if (!self.endsWith(".ts")) return { source: new URL("./sqlite-audit-worker.js", self), eval: false };
  const worker = new URL("./sqlite-audit-worker.ts", self).href;
  // The ESM entry of tsx's API, found from here (a bare name in the thread would resolve from the cwd).
  const tsx =
    typeof import.meta.resolve === "function"
      ? import.meta.resolve("tsx/esm/api")
      : pathToFileURL(createRequire(self).resolve("tsx/esm/api")).href;
  return {
    source: `import(${JSON.stringify(tsx)}).then((api) => { api.register(); return import(${JSON.stringify(worker)}); })`,
    eval: true,
  };
}

export class SqliteAuditWriter {
  private worker: Worker | undefined;
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private closed = false;

  /** @param file the SQLite database file (migrated before the first append). */
  constructor(private readonly file: string) {}

  /**
   * Appends the entries in order, in one transaction, chained to the log's head; resolves with
   * their ids once the commit is on disk (synchronous=FULL).
   * @throws GatehouseError `unavailable` when the database refuses the batch (nothing of it is
   * kept), when the worker died with it, or after close().
   */
  append(writes: AuditWrite[]): Promise<number[]> {
    if (writes.length === 0) return Promise.resolve([]);
    if (this.closed)
      return Promise.reject(unavailable("the audit writer is closed (the gateway is stopping)"));
    const batch: WriterBatch = writes.map(({ event, exec }) => {
      const { details, ...fields } = event;
      return exec
        ? { event: fields, detailsJson: JSON.stringify(details), exec }
        : { event: fields, detailsJson: JSON.stringify(details) };
    });
    const id = this.nextId++;
    return new Promise<number[]>((resolve, reject) => {
      const worker = this.start();
      this.waiting.set(id, { resolve, reject });
      // Keep the process alive only while a commit is awaited: an idle writer never holds it open.
      if (this.waiting.size === 1) worker.ref();
      const request: WriterRequest = { type: "append", id, writes: batch };
      worker.postMessage(request);
    });
  }

  /** Batches posted and not yet answered. */
  get pending(): number {
    return this.waiting.size;
  }

  /** Whether a worker thread is running. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  /**
   * Lets the worker finish the batches it already holds, closes its connection and ends the thread.
   * Appends after this are refused.
   */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    if (!worker) return;
    const exited = new Promise<void>((resolve) => worker.once("exit", () => resolve()));
    const request: WriterRequest = { type: "close" };
    worker.postMessage(request);
    worker.ref();
    await exited;
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const { source, eval: isEval } = workerSource();
    const workerData: WriterStart = { file: this.file };
    const worker = new Worker(source, { eval: isEval, workerData });
    worker.unref();
    worker.on("message", (reply: WriterReply) => this.settle(reply));
    worker.on("error", (error) => this.lost(worker, `the audit writer failed: ${error.message}`));
    worker.on("exit", (code) => this.lost(worker, `the audit writer stopped (exit code ${code})`));
    this.worker = worker;
    return worker;
  }

  private settle(reply: WriterReply): void {
    const waiting = this.waiting.get(reply.id);
    if (!waiting) return;
    this.waiting.delete(reply.id);
    if (this.waiting.size === 0) this.worker?.unref();
    if ("ids" in reply) waiting.resolve(reply.ids);
    else
      waiting.reject(
        unavailable(
          `the audit log could not be written (${reply.error.code ?? "error"}: ${reply.error.message}); nothing of this batch was kept`,
        ),
      );
  }

  /** The worker is gone: whatever it held is answered now, never left waiting. */
  private lost(worker: Worker, why: string): void {
    if (this.worker !== worker) return;
    this.worker = undefined;
    const waiting = [...this.waiting.values()];
    this.waiting.clear();
    for (const w of waiting) w.reject(unavailable(why));
  }
}

function unavailable(description: string): GatehouseError {
  return new GatehouseError(
    "unavailable",
    description,
    "Check the gateway's log and that gatehouse.db is writable and its disk not full; retry once it is.",
  );
}
