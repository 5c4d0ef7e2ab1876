import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, chmodSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { CLI, freePort, nodeRegisterArgs, runJson, tempHome, type CliResult } from "./harness.js";
import { gatewayForFile } from "./file-gateway.js";

/** The CLI run under a given umask, as a shell user would (`umask 000; gatehouse ...`). */
function runWithUmask(umask: string, args: string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(
      "/bin/sh",
      ["-c", `umask ${umask} && exec "$0" "$@"`, process.execPath, CLI, ...args],
      {
        stdio: ["ignore", "pipe", "pipe"],
      },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const modeOf = (file: string) => "0" + (statSync(file).mode & 0o777).toString(8);

/** An existing, empty, world-readable folder: what `mkdir` makes under the usual umask 022. */
function openFolder(prefix: string): string {
  const dir = path.join(mkdtempSync(path.join(os.tmpdir(), `gh-${prefix}-`)), "home");
  mkdirSync(dir);
  chmodSync(dir, 0o755);
  return dir;
}

const gateway = gatewayForFile();

describe("home folder modes", () => {
  for (const umask of ["022", "000"]) {
    it(`gateway init makes an existing 0755 folder, and a new one, 0700 with keys 0600 (umask ${umask})`, async () => {
      for (const home of [openFolder("init-open"), tempHome("init-new")]) {
        const port = await freePort();
        const result = await runWithUmask(umask, [
          "gateway",
          "init",
          "--home",
          home,
          "--listen",
          `127.0.0.1:${port}`,
          "--json",
        ]);
        expect(result.code, result.stderr + result.stdout).toBe(0);
        expect(modeOf(home)).toBe("0700");
        for (const dir of ["pki", "admin"]) expect(modeOf(path.join(home, dir)), dir).toBe("0700");
        for (const key of ["pki/ca.key", "pki/server.key", "admin/admin.key", "gateway.json", "gatehouse.db"])
          expect(modeOf(path.join(home, key)), key).toBe("0600");
      }
    });

    it(`node register makes an existing 0755 folder, and a new one, 0700 with its key 0600 (umask ${umask})`, async () => {
      const { token } = await runJson<{ token: string }>([
        "enroll",
        "create",
        "--uses",
        "2",
        "--home",
        gateway.home,
      ]);
      for (const [index, home] of [openFolder("reg-open"), tempHome("reg-new")].entries()) {
        const result = await runWithUmask(umask, [
          ...nodeRegisterArgs(gateway, home, { name: `modes-${umask}-${index}` }),
          "--enroll-token",
          token,
          "--json",
        ]);
        expect(result.code, result.stderr + result.stdout).toBe(0);
        expect(modeOf(home)).toBe("0700");
        expect(modeOf(path.join(home, "device.key"))).toBe("0600");
        expect(modeOf(path.join(home, "node.json"))).toBe("0600");
      }
    });
  }
});
