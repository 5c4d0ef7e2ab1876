import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";
import { CLI } from "./harness.js";

const run = promisify(execFile);

/** The project's root: where `npm install -g .` is run, as the README says. */
const ROOT = path.resolve(path.dirname(CLI), "../..");

describe("gatehouse on PATH", () => {
  const prefix = mkdtempSync(path.join(os.tmpdir(), "gh-npm-prefix-"));
  const elsewhere = mkdtempSync(path.join(os.tmpdir(), "gh-elsewhere-"));
  afterAll(() => {
    rmSync(prefix, { recursive: true, force: true });
    rmSync(elsewhere, { recursive: true, force: true });
  });

  it("`npm install -g .` puts a gatehouse that runs from another folder", async () => {
    // --prefix keeps the test away from the machine's real global folder; the README's command
    // is the same without it.
    await run("npm", ["install", "-g", "--prefix", prefix, "--no-audit", "--no-fund", "."], {
      cwd: ROOT,
      timeout: 120_000,
    });
    const bin = path.join(prefix, "bin");
    expect(existsSync(path.join(bin, "gatehouse"))).toBe(true);

    // Found by the shell through PATH, run from a folder that has nothing of the project.
    const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ""}` };
    const version = await run("sh", ["-c", "gatehouse --version"], { cwd: elsewhere, env });
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);

    // A real command, to show its modules resolve from the installed location.
    const home = path.join(elsewhere, "gw");
    const init = await run("sh", ["-c", `gatehouse gateway init --home "${home}" --json`], {
      cwd: elsewhere,
      env,
      timeout: 60_000,
    });
    const created = JSON.parse(init.stdout) as { gatewayId: string; caFingerprint: string };
    expect(created.caFingerprint).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(existsSync(path.join(home, "gateway.json"))).toBe(true);
  }, 180_000);
});
