import { afterAll, describe, expect, it } from "vitest";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { browserCommand, openBrowser } from "../src/cli/open-browser.js";

const dir = mkdtempSync(path.join(os.tmpdir(), "gh-open-browser-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const URL = "https://127.0.0.1:18789/dashboard/login?token=abc_DEF-123";

/** A PATH with only a fake `xdg-open` that writes the URL it was given to `marker`. */
function fakeOpener(marker: string): NodeJS.ProcessEnv {
  const bin = mkdtempSync(path.join(dir, "bin-"));
  const script = path.join(bin, "xdg-open");
  writeFileSync(script, `#!/bin/sh\nprintf '%s' "$1" > '${marker}'\n`);
  chmodSync(script, 0o755);
  return { PATH: `${bin}:/usr/bin:/bin`, DISPLAY: ":0" };
}

describe("browserCommand: how each desktop opens a link", () => {
  it("uses open on macOS, cmd /c start with an empty title on Windows, xdg-open on a Linux desktop", () => {
    expect(browserCommand(URL, "darwin", {})).toEqual({ file: "open", args: [URL] });
    expect(browserCommand(URL, "win32", {})).toEqual({ file: "cmd", args: ["/c", "start", '""', URL] });
    expect(browserCommand(URL, "linux", { DISPLAY: ":0" })).toEqual({ file: "xdg-open", args: [URL] });
    expect(browserCommand(URL, "linux", { WAYLAND_DISPLAY: "wayland-0" })).toEqual({
      file: "xdg-open",
      args: [URL],
    });
  });

  it("has nothing to open with on a Linux machine without a graphical session (ssh, a server)", () => {
    expect(browserCommand(URL, "linux", {})).toBeUndefined();
    expect(browserCommand(URL, "freebsd", { DISPLAY: "" })).toBeUndefined();
  });
});

describe("openBrowser", () => {
  it("opens nothing when stdout is not a terminal (a script, a pipe, a test)", async () => {
    const marker = path.join(dir, "not-a-tty");
    const env = fakeOpener(marker);
    expect(await openBrowser(URL, { platform: "linux", env, isTTY: false })).toBe(false);
    // It answers before starting anything: no opener ran, so there is no mark.
    expect(existsSync(marker)).toBe(false);
  });

  it("starts the desktop's opener with the link as one argument on a terminal", async () => {
    const marker = path.join(dir, "opened");
    const env = fakeOpener(marker);
    expect(await openBrowser(URL, { platform: "linux", env, isTTY: true })).toBe(true);
    await expect
      .poll(() => existsSync(marker) && readFileSync(marker, "utf8"), { timeout: 20_000 })
      .toBe(URL);
  });

  it("resolves false, without throwing, when the opener is not installed", async () => {
    const env = { PATH: dir, DISPLAY: ":0" };
    expect(await openBrowser(URL, { platform: "linux", env, isTTY: true })).toBe(false);
  });
});
