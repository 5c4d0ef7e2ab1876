import { createHash } from "node:crypto";

/** The hash the first entry chains to. */
export const GENESIS_HASH = "0".repeat(64);

export interface ChainedFields {
  seq: number;
  prevHash: string;
  ts: string;
  type: string;
  outcome: string;
  actor: string | null;
  subject: string | null;
  address: string | null;
  code: string | null;
  /** The details exactly as stored (JSON text): what is hashed is what is kept. */
  detailsJson: string;
}

/**
 * SHA-256 over a canonical encoding of one entry and the hash of the one before: a JSON array in
 * a fixed order, so no field can be moved into another and no separator can be forged.
 */
export function auditEntryHash(entry: ChainedFields): string {
  const canonical = JSON.stringify([
    "gatehouse-audit-v1",
    entry.seq,
    entry.prevHash,
    entry.ts,
    entry.type,
    entry.outcome,
    entry.actor,
    entry.subject,
    entry.address,
    entry.code,
    entry.detailsJson,
  ]);
  return createHash("sha256").update(canonical).digest("hex");
}

export interface StoredChainEntry extends ChainedFields {
  id: number;
  hash: string;
}

export interface ChainVerdict {
  ok: boolean;
  checked: number;
  /** The first entry that is altered, missing (a gap before it) or out of order. */
  firstBroken?: { id: number; seq: number; reason: string };
  lastHash: string;
}

/** Walks entries in storage order and finds the first one whose place in the chain is wrong. */
export function verifyAuditChain(
  entries: StoredChainEntry[],
  expectedPrev = GENESIS_HASH,
  expectedSeq = 1,
): ChainVerdict {
  let prev = expectedPrev;
  let seq = expectedSeq;
  let checked = 0;
  for (const entry of entries) {
    const broken = (reason: string): ChainVerdict => ({
      ok: false,
      checked,
      firstBroken: { id: entry.id, seq: entry.seq, reason },
      lastHash: prev,
    });
    if (entry.seq !== seq) {
      return broken(
        entry.seq > seq
          ? `entries ${seq}..${entry.seq - 1} are missing (removed, or moved elsewhere) before this one`
          : `this entry is out of order (sequence ${entry.seq} where ${seq} was expected)`,
      );
    }
    if (entry.prevHash !== prev)
      return broken("it does not chain to the entry before it (removed, inserted or reordered)");
    if (auditEntryHash(entry) !== entry.hash) return broken("its content was altered after it was written");
    prev = entry.hash;
    seq += 1;
    checked += 1;
  }
  return { ok: true, checked, lastHash: prev };
}
