import { readdirSync } from "node:fs";
import https from "node:https";
import { setTimeout as sleep } from "node:timers/promises";
import type { TestGateway } from "./harness.js";

/**
 * What an attacker exhausts by holding connections: the gateway process's file descriptors.
 * Shared by the tests that prove connections the gateway gives up on are let go.
 */

/** Generous: the machines are shared and loaded; only a leak takes this long to stay high. */
export const SETTLE_MS = 30_000;

/** How many descriptors the gateway process has open now. */
export function openDescriptors(gateway: TestGateway): number {
  return readdirSync(`/proc/${gateway.process.child.pid}/fd`).length;
}

/** Polls `predicate` every 100 ms; throws naming `what` after SETTLE_MS. */
export async function waitUntil(predicate: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + SETTLE_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await sleep(100);
  }
}

/** GET /health on a fresh connection (no keep-alive agent, so it leaves no descriptor behind). */
export function health(gateway: TestGateway, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https
      .get(`${gateway.url}/health`, { ca, agent: false }, (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode ?? 0));
      })
      .on("error", reject);
  });
}
