import { existsSync, readdirSync, rmSync } from "node:fs";
import path from "node:path";
import { initGatewayHome, type GatewayInitOptions, type GatewayInitResult } from "./home.js";
import { startGateway, type RunningGateway, type StartGatewayOptions } from "./start.js";

/**
 * `gateway start` on a folder without a home: `gateway init`, then the start. A start that fails
 * (a taken port, a wrong address) removes everything the init made — the folders it created, or
 * the files it added to a folder that was there — so the failure leaves nothing behind and the
 * same command can simply be run again.
 * @throws whatever the init or the start throws, after the clean-up.
 */
export async function initAndStartGateway(
  home: string,
  init: GatewayInitOptions,
  start: StartGatewayOptions,
): Promise<{ created: GatewayInitResult; running: RunningGateway }> {
  const undo = undoCreation(home);
  try {
    const created = await initGatewayHome(home, init);
    const running = await startGateway(home, start);
    return { created, running };
  } catch (error) {
    undo();
    throw error;
  }
}

/**
 * `gateway init`, leaving nothing behind when it fails part-way (a certificate that cannot be
 * issued, a full disk): the same clean-up as a first start's, so the command can be run again.
 * @throws whatever the init throws, after the clean-up.
 */
export function initGatewayHomeOrNothing(home: string, init: GatewayInitOptions): Promise<GatewayInitResult> {
  return makeHomeOrNothing(home, () => initGatewayHome(home, init));
}

/**
 * Runs `make` (an init of any kind: `gateway init --store`, `gateway join`) and removes what it
 * created in `home` when it fails, so the command can be run again.
 * @throws whatever `make` throws, after the clean-up.
 */
export async function makeHomeOrNothing<T>(home: string, make: () => Promise<T>): Promise<T> {
  const undo = undoCreation(home);
  try {
    return await make();
  } catch (error) {
    undo();
    throw error;
  }
}

/** A function that removes what is created in `home` from now on (and its missing parents). */
function undoCreation(home: string): () => void {
  const folder = path.resolve(home);
  if (existsSync(folder)) {
    const before = new Set(readdirSync(folder));
    return () => {
      for (const entry of readdirSync(folder))
        if (!before.has(entry)) rmSync(path.join(folder, entry), { recursive: true, force: true });
    };
  }
  let top = folder;
  while (!existsSync(path.dirname(top)) && path.dirname(top) !== top) top = path.dirname(top);
  return () => rmSync(top, { recursive: true, force: true });
}
