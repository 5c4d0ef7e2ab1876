import type { DashboardLinkRecord, DashboardSessionRecord } from "../../store/types.js";
import type { DashboardStorage } from "./sessions.js";

/** Links kept at most; a new link past it forgets the oldest one (memory is not a disk). */
export const MAX_LINKS = 200;

/**
 * Dashboard links and sessions in this process's memory: a gateway alone, where no other instance
 * needs them (a restart ends them all). The same contract as the store's dashboard methods
 * (store/types.ts), so DashboardSessions applies one set of rules over either. Only sha256 hashes
 * of the link tokens and cookie values are keys here, as in the store.
 */
export class MemoryDashboardStorage implements DashboardStorage {
  private readonly links = new Map<string, DashboardLinkRecord>();
  /** By fingerprint, oldest login first (a Map keeps insertion order). */
  private readonly sessions = new Map<string, DashboardSessionRecord>();

  /** Sessions kept now, ended ones not yet forgotten included. */
  get size(): number {
    return this.sessions.size;
  }

  async putDashboardLink(link: DashboardLinkRecord): Promise<void> {
    this.links.set(link.linkHash, { ...link });
    while (this.links.size > MAX_LINKS) this.links.delete(this.links.keys().next().value as string);
  }

  async getDashboardLink(linkHash: string): Promise<DashboardLinkRecord | undefined> {
    const link = this.links.get(linkHash);
    return link && { ...link };
  }

  async useDashboardLink(linkHash: string, now: string): Promise<DashboardLinkRecord | undefined> {
    const link = this.links.get(linkHash);
    if (!link || link.used !== 0 || Date.parse(link.expiresAt) <= Date.parse(now)) return undefined;
    link.used = 1;
    return { ...link };
  }

  async pruneDashboardLinks(before: string): Promise<number> {
    return deleteWhere(this.links, (link) => Date.parse(link.expiresAt) < Date.parse(before));
  }

  async putDashboardSession(session: DashboardSessionRecord, keep: number): Promise<void> {
    this.sessions.set(session.fingerprint, { ...session });
    while (this.sessions.size > keep) this.sessions.delete(this.sessions.keys().next().value as string);
  }

  async getDashboardSession(fingerprint: string): Promise<DashboardSessionRecord | undefined> {
    const session = this.sessions.get(fingerprint);
    return session && { ...session };
  }

  async touchDashboardSession(fingerprint: string, lastUsedAt: string): Promise<void> {
    const session = this.sessions.get(fingerprint);
    // Never back in time, as in the store.
    if (session && Date.parse(session.lastUsedAt) < Date.parse(lastUsedAt)) session.lastUsedAt = lastUsedAt;
  }

  async deleteDashboardSession(fingerprint: string): Promise<boolean> {
    return this.sessions.delete(fingerprint);
  }

  async deleteDashboardSessions(match: {
    idleBefore?: string;
    createdBefore?: string;
    createdBy?: string;
  }): Promise<number> {
    const idleBefore = match.idleBefore === undefined ? -Infinity : Date.parse(match.idleBefore);
    const createdBefore = match.createdBefore === undefined ? -Infinity : Date.parse(match.createdBefore);
    return deleteWhere(
      this.sessions,
      (session) =>
        Date.parse(session.lastUsedAt) < idleBefore ||
        Date.parse(session.createdAt) < createdBefore ||
        (match.createdBy !== undefined && session.createdBy === match.createdBy),
    );
  }
}

function deleteWhere<T>(map: Map<string, T>, ended: (value: T) => boolean): number {
  let deleted = 0;
  for (const [key, value] of map)
    if (ended(value)) {
      map.delete(key);
      deleted++;
    }
  return deleted;
}
