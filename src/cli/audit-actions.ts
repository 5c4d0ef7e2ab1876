/**
 * What the `audit` commands do, loaded only when one runs (their definitions are in
 * audit-commands.ts).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { AdminClient } from "./admin-client.js";
import type { CommandContext } from "./run.js";
import { printJson, printJsonLine, printText, UsageError } from "./output.js";
import type { TargetOptions } from "./target-options.js";

interface Entry {
  id: number;
  seq: number;
  ts: string;
  type: string;
  outcome: string;
  actor: string | null;
  subject: string | null;
  address: string | null;
  code: string | null;
  details: Record<string, unknown>;
  hash: string;
}

const strings = (value: unknown): string[] =>
  Array.isArray(value) ? value.filter((v): v is string => typeof v === "string") : [];

/**
 * A `*.summary` entry stands for many refusals of one kind from one address in one window (see
 * src/audit/refusal-summary.ts): say how many, between when, where and with what they knocked.
 */
function summaryText(entry: Entry): string {
  const d = entry.details;
  const time = (value: unknown) => (typeof value === "string" ? value.slice(11, 19) : "?");
  const parts = [`${typeof d.count === "number" ? d.count : "?"} more, ${time(d.firstAt)}–${time(d.lastAt)}`];
  const routes = strings(d.routes);
  if (routes.length) parts.push(`on ${routes.join(", ")}`);
  const credentials = strings(d.credentials);
  if (credentials.length) parts.push(`credential ${credentials.join(", ")}`);
  const fingerprints = strings(d.fingerprints);
  if (fingerprints.length) parts.push(`fingerprints ${fingerprints.join(", ")}`);
  return `  (${parts.join("; ")})`;
}

function line(entry: Entry): string {
  const folded = entry.details.otherAddresses === true;
  const sample = strings(entry.details.addressSample);
  const who = [
    entry.actor && `by ${entry.actor}`,
    entry.subject && `on ${entry.subject}`,
    entry.address && `from ${entry.address}`,
    folded && `from other addresses${sample.length ? ` (e.g. ${sample.join(", ")})` : ""}`,
  ]
    .filter(Boolean)
    .join(" ");
  const mark = entry.outcome === "success" ? "✓" : "✗";
  const summary = entry.type.endsWith(".summary") ? summaryText(entry) : "";
  return `${entry.ts}  #${entry.seq}  ${mark} ${entry.type}${entry.code ? ` ${entry.code}` : ""}  ${who}${summary}\n`;
}

async function* pages(client: AdminClient, afterId: number): AsyncGenerator<Entry[]> {
  let cursor = afterId;
  for (;;) {
    const { entries } = await client.get<{ entries: Entry[] }>(`/api/v1/audit?afterId=${cursor}&limit=1000`);
    if (entries.length === 0) return;
    yield entries;
    cursor = entries[entries.length - 1]!.id;
  }
}

/**
 * The newest `count` entries, oldest first, and the id of the newest entry (0 for an empty log):
 * read newest first (order=desc, paging back with beforeId), so only what is shown is fetched,
 * however long the log is.
 */
async function newest(client: AdminClient, count: number): Promise<{ entries: Entry[]; newestId: number }> {
  const found: Entry[] = [];
  let before = "";
  for (;;) {
    // At least one entry even for -n 0: --follow starts after the newest.
    const limit = Math.min(1000, Math.max(1, count - found.length));
    const { entries } = await client.get<{ entries: Entry[] }>(
      `/api/v1/audit?order=desc&limit=${limit}${before}`,
    );
    found.push(...entries);
    if (entries.length < limit || found.length >= count) break;
    before = `&beforeId=${entries[entries.length - 1]!.id}`;
  }
  return { entries: found.slice(0, count).reverse(), newestId: found[0]?.id ?? 0 };
}

/** `audit tail [-n COUNT] [-f]`: the newest entries, then (with -f) new ones as they come. */
export async function auditTail(
  ctx: CommandContext,
  options: TargetOptions & { lines: string; follow?: boolean },
): Promise<void> {
  const count = Number(options.lines);
  if (!/^\d+$/.test(options.lines) || !Number.isSafeInteger(count))
    throw new UsageError(
      `--lines ${options.lines}: give how many entries to show, a whole number (0 or more)`,
    );
  const client = AdminClient.fromHome(ctx.home, options);
  const { entries: last, newestId } = await newest(client, count);
  if (ctx.json && !options.follow) {
    printJson({ entries: last });
    return;
  }
  const print = (entry: Entry) => (ctx.json ? printJsonLine(entry) : printText(line(entry)));
  last.forEach(print);
  let cursor = newestId;
  while (options.follow) {
    await sleep(1000);
    for await (const page of pages(client, cursor)) {
      page.forEach(print);
      cursor = page[page.length - 1]!.id;
    }
  }
}

/** `audit export`: every entry, oldest first, as JSON Lines (with --json: one document). */
export async function auditExport(ctx: CommandContext, options: TargetOptions): Promise<void> {
  const client = AdminClient.fromHome(ctx.home, options);
  // --json promises one document on every command; JSON Lines is export's own format.
  const all: Entry[] = [];
  for await (const page of pages(client, 0)) {
    if (ctx.json) all.push(...page);
    else for (const entry of page) printJsonLine(entry);
  }
  if (ctx.json) printJson({ entries: all });
}

/** `audit verify`: checks the hash chain; exit 1 when it is broken. */
export async function auditVerify(ctx: CommandContext, options: TargetOptions): Promise<void> {
  const verdict = await AdminClient.fromHome(ctx.home, options).get<{
    ok: boolean;
    checked: number;
    firstBroken?: { id: number; seq: number; reason: string };
  }>("/api/v1/audit/verify");
  if (ctx.json) printJson(verdict);
  else if (verdict.ok) printText(`✓ audit log intact: ${verdict.checked} entries chain correctly\n`);
  else
    printText(
      `✗ audit log broken at entry #${verdict.firstBroken!.seq} (row id ${verdict.firstBroken!.id}): ${verdict.firstBroken!.reason}\n` +
        `  ${verdict.checked} entries before it are intact\n`,
    );
  if (!verdict.ok) process.exitCode = 1;
}
