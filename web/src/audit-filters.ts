// The Audit page's filters as a person types them, turned into the API's query. Pure: the page
// and the unit tests call the same functions.

/** What the person typed, as the URL hash keeps it (`#/audit?actor=…&device=…&kind=…`). */
export interface AuditFilterInput {
  actor: string;
  device: string;
  kind: string;
}

/** The device fields a filter can name a device by. */
export interface NamedDevice {
  deviceId: string;
  name: string;
}

/** GET /api/v1/audit's filters; `ambiguous` names the inputs that match several devices. */
export interface ResolvedFilters {
  query: { actor?: string; subject?: string; type?: string };
  ambiguous: { field: "actor" | "device"; value: string; count: number }[];
}

const DEVICE_PREFIX = "device:";

type Resolution = { id: string } | { ambiguous: number } | undefined;

/**
 * The device `value` names: a device name (exact, else ignoring case), else a device id or the
 * start of one (as the tables show it, shortened). Several matches → ambiguous (never a guess);
 * none → undefined.
 */
export function resolveDevice(value: string, devices: readonly NamedDevice[]): Resolution {
  const pick = (matches: readonly NamedDevice[]): Resolution =>
    matches.length === 1
      ? { id: matches[0]!.deviceId }
      : matches.length > 1
        ? { ambiguous: matches.length }
        : undefined;
  const lower = value.toLowerCase();
  return (
    pick(devices.filter((device) => device.name === value)) ??
    pick(devices.filter((device) => device.name.toLowerCase() === lower)) ??
    pick(devices.filter((device) => device.deviceId === value)) ??
    pick(devices.filter((device) => device.deviceId.startsWith(value)))
  );
}

/**
 * The API query for the typed filters. Actor and Device take a device name, a device id (or the
 * start of one), or the stored string itself (`device:<id>`, `key:<id>`, `dashboard:<hex>`: any
 * value with a colon is sent as typed). A device's actor is `device:<id>`; its subject is `<id>`
 * (the gateway also matches `device:<id>`). Kind goes as typed: the gateway matches `device` as
 * that type and everything under `device.`.
 */
export function resolveAuditFilters(
  input: AuditFilterInput,
  devices: readonly NamedDevice[],
): ResolvedFilters {
  const resolved: ResolvedFilters = { query: {}, ambiguous: [] };
  const actor = input.actor.trim();
  const device = input.device.trim();
  const kind = input.kind.trim();
  if (actor) {
    const found = actor.includes(":") ? undefined : resolveDevice(actor, devices);
    if (found && "ambiguous" in found)
      resolved.ambiguous.push({ field: "actor", value: actor, count: found.ambiguous });
    else resolved.query.actor = found ? DEVICE_PREFIX + found.id : actor;
  }
  if (device) {
    const bare = device.startsWith(DEVICE_PREFIX) ? device.slice(DEVICE_PREFIX.length) : device;
    const found = bare.includes(":") ? undefined : resolveDevice(bare, devices);
    if (found && "ambiguous" in found)
      resolved.ambiguous.push({ field: "device", value: device, count: found.ambiguous });
    else resolved.query.subject = found ? found.id : bare;
  }
  if (kind) resolved.query.type = kind;
  return resolved;
}

/** The filters a hash such as `#/audit?actor=laptop&kind=device` holds (absent ones empty). */
export function filtersFromHash(hash: string): AuditFilterInput {
  const at = hash.indexOf("?");
  const params = new URLSearchParams(at < 0 ? "" : hash.slice(at + 1));
  return {
    actor: params.get("actor") ?? "",
    device: params.get("device") ?? "",
    kind: params.get("kind") ?? "",
  };
}

/** The Audit tab's hash for `filters`: `#/audit`, with `?actor=…&device=…&kind=…` for those set. */
export function hashForFilters(filters: AuditFilterInput): string {
  const params = new URLSearchParams();
  for (const name of ["actor", "device", "kind"] as const) {
    const value = filters[name].trim();
    if (value) params.set(name, value);
  }
  const query = params.toString();
  return query ? `#/audit?${query}` : "#/audit";
}
