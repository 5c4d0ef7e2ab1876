import { readFileSync } from "node:fs";
import { GatehouseError } from "../protocol/errors.js";

/**
 * The text of a file named by a flag (`--ca-file`, `--api-key-file`, …), or standard input for `-`
 * when `stdin` allows it. Every file a user names on the command line is read here, so a wrong
 * path is the user's request to fix — `invalid_request` naming the flag and the file — and never
 * an `internal_error` carrying Node's ENOENT.
 * @param flag the flag as typed, e.g. "--ca-file"
 * @param file the path given to it
 * @throws GatehouseError `invalid_request` when the file is missing, a folder, or unreadable.
 */
export function readFlagFile(flag: string, file: string, options: { stdin?: boolean } = {}): string {
  const fromStdin = file === "-" && options.stdin === true;
  try {
    return readFileSync(fromStdin ? 0 : file, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why =
      code === "ENOENT"
        ? "does not exist"
        : code === "EISDIR"
          ? "is a folder, not a file"
          : code === "EACCES" || code === "EPERM"
            ? "cannot be read (permission denied)"
            : `cannot be read (${code ?? (error as Error).message})`;
    throw new GatehouseError(
      "invalid_request",
      `${flag} ${fromStdin ? "- (standard input)" : file} ${why}`,
      `Check the path given to ${flag}: it must name a readable file.`,
    );
  }
}
