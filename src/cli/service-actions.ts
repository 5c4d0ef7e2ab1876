/**
 * What the `service` commands do, loaded only when one runs (their definitions are in
 * service-commands.ts).
 */
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { NODE_FILES, writeFileAtomic } from "../config/index.js";
import { GatehouseError } from "../protocol/errors.js";
import { serviceFile, type ServicePlatform, type ServiceRole } from "../service/service-files.js";
import type { CommandContext } from "./run.js";
import { UsageError, printJson, printText } from "./output.js";

const CLI_PATH = fileURLToPath(new URL("./main.js", import.meta.url));

/** `service install ROLE`: writes a systemd user unit or a LaunchAgent that holds no credential. */
export async function serviceInstall(
  ctx: CommandContext,
  role: string,
  options: { dryRun?: boolean; platform?: string; force?: boolean },
): Promise<void> {
  if (role !== "gateway" && role !== "node") throw new UsageError("the role is gateway or node");
  const platform = (options.platform ??
    (process.platform === "darwin" ? "darwin" : "linux")) as ServicePlatform;
  if (platform !== "linux" && platform !== "darwin") throw new UsageError("--platform is linux or darwin");
  if (role === "node" && !existsSync(path.join(ctx.home, NODE_FILES.config)))
    throw new GatehouseError(
      "config_missing",
      `${path.join(ctx.home, NODE_FILES.config)} does not exist: this home has no registered node`,
      "Register the node first: `gatehouse node register --gateway URL --ca-fingerprint sha256:…`.",
    );
  const file = serviceFile(
    { role: role as ServiceRole, home: ctx.home, nodePath: process.execPath, cliPath: CLI_PATH },
    platform,
  );
  if (options.dryRun) {
    if (ctx.json) printJson({ ...file, written: false });
    else printText(file.content);
    return;
  }
  if (existsSync(file.path) && readFileSync(file.path, "utf8") !== file.content && !options.force)
    throw new GatehouseError(
      "invalid_request",
      `${file.path} exists and differs`,
      "Compare it with `--dry-run`, then replace it with `--force`.",
    );
  mkdirSync(path.dirname(file.path), { recursive: true });
  writeFileAtomic(file.path, file.content, 0o644);
  if (ctx.json) printJson({ ...file, written: true });
  else
    printText(
      `✓ wrote ${file.path} (no credential in it: the ${role} reads its home ${ctx.home})\n` +
        `Load it:\n${file.next.map((line) => `  ${line}`).join("\n")}\n`,
    );
}
