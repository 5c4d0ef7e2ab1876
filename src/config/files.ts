import {
  existsSync,
  mkdirSync,
  writeFileSync,
  renameSync,
  openSync,
  fsyncSync,
  closeSync,
  chmodSync,
  statSync,
} from "node:fs";
import path from "node:path";
import { GatehouseError } from "../protocol/errors.js";

/**
 * A home holds keys, so its folder is 0700 (PRODUCT.md: "The home folder itself is 0700"): one
 * that this creates, and one that existed already (an empty folder made beforehand with `mkdir`,
 * or a home being set up again), whatever its mode was and whatever the umask. The mode is set,
 * never inherited. Used for the home and for the folders inside it that hold keys (pki/, admin/).
 *
 * @throws GatehouseError `invalid_request` when the path is not a folder, or its mode cannot be
 *   set (another user's folder).
 */
export function ensurePrivateDir(dir: string): void {
  if (!existsSync(dir)) mkdirSync(dir, { recursive: true, mode: 0o700 });
  const stat = statSync(dir);
  if (!stat.isDirectory())
    throw new GatehouseError(
      "invalid_request",
      `${dir} exists and is not a folder`,
      "Choose another --home.",
    );
  if ((stat.mode & 0o777) === 0o700) return;
  try {
    chmodSync(dir, 0o700);
  } catch (error) {
    throw new GatehouseError(
      "invalid_request",
      `cannot make ${dir} private (mode 0700): ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      "Use a folder you own for --home.",
    );
  }
}

/**
 * Writes a file so that a crash never leaves it half-written: a temporary file beside it, fsync,
 * rename. Private by default (0600): homes hold keys and certificates.
 * @param options.fsync false for a file that means nothing after a power loss (a pid file): the
 *   rename still keeps readers from seeing it half-written, without blocking on the disk.
 */
export function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  mode = 0o600,
  options: { fsync?: boolean } = {},
): void {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${process.pid}.tmp`);
  writeFileSync(tmp, data, { mode });
  if (options.fsync !== false) {
    const fd = openSync(tmp, "r");
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
  renameSync(tmp, file);
  chmodSync(file, mode);
}

export function writeJsonAtomic(file: string, value: unknown, mode = 0o600): void {
  writeFileAtomic(file, JSON.stringify(value, null, 2) + "\n", mode);
}
