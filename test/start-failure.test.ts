import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { pino } from "pino";
import { initGatewayHome } from "../src/gateway/home.js";
import { startGateway } from "../src/gateway/start.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "gh-startfail-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** This process's open descriptors that point into `folder`. */
function descriptorsInto(folder: string): string[] {
  return readdirSync("/proc/self/fd").flatMap((fd) => {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      return target.startsWith(folder) ? [target] : [];
    } catch {
      return [];
    }
  });
}

describe("a gateway start that fails", () => {
  it("closes the database it opened, so an in-process caller holds nothing afterwards", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const { port } = taken.address() as net.AddressInfo;
    const home = path.join(dir, "home");
    await initGatewayHome(home, { listen: `127.0.0.1:${port}` });
    const before = descriptorsInto(home);

    await expect(startGateway(home, { logger: pino({ level: "silent" }) })).rejects.toThrow();
    expect(descriptorsInto(home)).toEqual(before);

    // The home is usable at once on a free port.
    taken.close();
    const gateway = await startGateway(home, {
      logger: pino({ level: "silent" }),
      flags: { listen: "127.0.0.1:0" },
    });
    await gateway.close();
    expect(descriptorsInto(home)).toEqual(before);
  });
});
