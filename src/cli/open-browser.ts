import { spawn } from "node:child_process";

/** What decides whether and how a link can be opened; every field defaults to this process's. */
export interface OpenBrowserContext {
  platform?: NodeJS.Platform;
  env?: NodeJS.ProcessEnv;
  /** Whether stdout is a terminal: a script, a pipe or a test never gets a browser window. */
  isTTY?: boolean;
}

/**
 * The program that opens a URL in the desktop's browser: `open` on macOS, `cmd /c start "" URL`
 * on Windows (the empty title keeps `start` from taking the URL for one), `xdg-open` on Linux and
 * the BSDs only when a graphical session is there (DISPLAY or WAYLAND_DISPLAY); else undefined.
 * The URL is one argument, never parsed by a shell (Windows: a URL this CLI made holds no `&`).
 */
export function browserCommand(
  url: string,
  platform: NodeJS.Platform,
  env: NodeJS.ProcessEnv,
): { file: string; args: string[] } | undefined {
  if (platform === "darwin") return { file: "open", args: [url] };
  if (platform === "win32") return { file: "cmd", args: ["/c", "start", '""', url] };
  if (env.DISPLAY || env.WAYLAND_DISPLAY) return { file: "xdg-open", args: [url] };
  return undefined;
}

/**
 * Opens `url` in the desktop's browser when stdout is a terminal and there is a desktop. The opener
 * runs detached, its output ignored, and is not waited for beyond its start. Never throws: a
 * missing opener or a failed start resolves false, and the caller has printed the link anyway.
 * @returns true when the opener was started.
 */
export async function openBrowser(url: string, context: OpenBrowserContext = {}): Promise<boolean> {
  const isTTY = context.isTTY ?? Boolean(process.stdout.isTTY);
  if (!isTTY) return false;
  const command = browserCommand(url, context.platform ?? process.platform, context.env ?? process.env);
  if (!command) return false;
  try {
    const child = spawn(command.file, command.args, {
      detached: true,
      stdio: "ignore",
      windowsVerbatimArguments: true,
      ...(context.env ? { env: context.env } : {}),
    });
    const started = await new Promise<boolean>((resolve) => {
      child.once("spawn", () => resolve(true));
      child.once("error", () => resolve(false));
    });
    // Errors after the start (none expected) must not end this process either.
    child.on("error", () => undefined);
    child.unref();
    return started;
  } catch {
    return false;
  }
}
