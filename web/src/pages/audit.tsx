import { useEffect, useRef, useState } from "preact/hooks";
import { getJson } from "../api.js";
import {
  filtersFromHash,
  hashForFilters,
  resolveAuditFilters,
  type AuditFilterInput,
  type ResolvedFilters,
} from "../audit-filters.js";
import { ErrorAlert } from "../components/error-alert.js";
import { RelativeTime } from "../components/relative-time.js";
import { StackTable } from "../components/stack-table.js";
import type { AuditEntry, ChainVerdict, DeviceView } from "../types.js";
import { useResource } from "../use-resource.js";

/** Entries per request: the API pages newest first (order=desc), older ones with beforeId. */
const PAGE = 200;

/** The table's columns, in the order each entry's row writes its cells. */
const COLUMNS = ["Time", "Kind", "Outcome", "Actor", "Device", "Address", "Details"];

/** The API's filters (see resolveAuditFilters). */
type Filters = ResolvedFilters["query"];

/** One newest-first page of the filtered log: entries below `beforeId`, or the newest ones. */
async function loadPage(filters: Filters, beforeId?: number): Promise<AuditEntry[]> {
  const query = new URLSearchParams({ order: "desc", limit: String(PAGE) });
  if (beforeId !== undefined) query.set("beforeId", String(beforeId));
  for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
  const { entries } = await getJson<{ entries: AuditEntry[] }>(`/api/v1/audit?${query.toString()}`);
  return entries;
}

/** Newest entries first; `full`: the last page was full, so older entries may exist. */
interface Loaded {
  entries: AuditEntry[];
  full: boolean;
}

/**
 * The newest page, and when older pages are shown (`floor`: the id they start below), as many
 * pages as reach down to it, so entries that arrived meanwhile never leave a gap above them.
 */
async function loadNewest(filters: Filters, floor: number | undefined): Promise<Loaded> {
  let entries: AuditEntry[] = [];
  let beforeId: number | undefined;
  for (;;) {
    const page = await loadPage(filters, beforeId);
    entries = entries.concat(page);
    const last = page[page.length - 1];
    const full = page.length === PAGE;
    if (!full || !last || floor === undefined || last.id <= floor) return { entries, full };
    beforeId = last.id;
  }
}

/** Pages asked for with "Load older": the entries below `from`, newest first. */
interface Older extends Loaded {
  from: number;
}

const loadVerdict = () => getJson<ChainVerdict>("/api/v1/audit/verify");

/** Audit: the log, newest first, filtered by actor, device (subject) and kind (type or `prefix.`). */
export function AuditPage({
  canRead,
  devices,
  deviceNames,
}: {
  canRead: boolean;
  /** Undefined while loading (or when the role cannot list devices): names are not resolved. */
  devices: DeviceView[] | undefined;
  deviceNames: Map<string, string>;
}) {
  if (!canRead) {
    return (
      <section class="empty">
        <p>Your role cannot read the audit log.</p>
      </section>
    );
  }
  return <AuditLog devices={devices ?? []} deviceNames={deviceNames} />;
}

const NO_ENTRIES: Loaded = { entries: [], full: false };

function AuditLog({ devices, deviceNames }: { devices: DeviceView[]; deviceNames: Map<string, string> }) {
  // The filters live in the URL hash (`#/audit?actor=…`): a reload or a shared link keeps them.
  const [typed, setTyped] = useState<AuditFilterInput>(() => filtersFromHash(window.location.hash));
  const [draft, setDraft] = useState<AuditFilterInput>(typed);
  const resolved = resolveAuditFilters(typed, devices);
  const filters = resolved.query;
  const blocked = resolved.ambiguous.length > 0;
  const [older, setOlder] = useState<Older>();
  const [olderBusy, setOlderBusy] = useState(false);
  const [olderError, setOlderError] = useState<unknown>();
  // Read by the loaders when they run, not when they were made (a live refresh, a late answer).
  const floor = useRef<number | undefined>(undefined);
  floor.current = older?.from;
  const generation = useRef(0);
  const newest = useResource(["audit"], JSON.stringify(resolved), () =>
    blocked ? Promise.resolve(NO_ENTRIES) : loadNewest(filters, floor.current),
  );

  // New filters start again from the newest page; an older page still on its way is dropped.
  const restart = () => {
    generation.current += 1;
    setOlder(undefined);
    setOlderBusy(false);
    setOlderError(undefined);
  };
  useEffect(() => {
    const follow = () => {
      if (!window.location.hash.startsWith("#/audit")) return;
      const next = filtersFromHash(window.location.hash);
      restart();
      setTyped(next);
      setDraft(next);
    };
    window.addEventListener("hashchange", follow);
    return () => window.removeEventListener("hashchange", follow);
  }, []);
  const example = devices.find((device) => device.status === "approved") ?? devices[0];
  const verdict = useResource(["audit"], "", loadVerdict);

  const top = newest.data?.entries ?? [];
  const topLast = top[top.length - 1];
  const bottom = older && topLast ? older.entries.filter((entry) => entry.id < topLast.id) : [];
  const shown = top.concat(bottom);
  const hasOlder = older ? older.full : (newest.data?.full ?? false);

  const loadOlder = async () => {
    const oldest = shown[shown.length - 1];
    if (!oldest) return;
    const asked = generation.current;
    setOlderBusy(true);
    try {
      const page = await loadPage(filters, oldest.id);
      if (asked !== generation.current) return;
      setOlder({ from: older?.from ?? oldest.id, entries: bottom.concat(page), full: page.length === PAGE });
      setOlderError(undefined);
    } catch (failure) {
      if (asked === generation.current) setOlderError(failure);
    } finally {
      if (asked === generation.current) setOlderBusy(false);
    }
  };

  const field = (name: keyof AuditFilterInput, label: string, placeholder: string) => (
    <label class="filter">
      <span>{label}</span>
      <input
        type="text"
        name={name}
        aria-label={label}
        placeholder={placeholder}
        value={draft[name]}
        onInput={(event) => setDraft({ ...draft, [name]: event.currentTarget.value })}
      />
    </label>
  );

  return (
    <section>
      <ChainState verdict={verdict.data} />
      <ErrorAlert error={verdict.error} />
      <form
        class="filters"
        onSubmit={(event) => {
          event.preventDefault();
          const next = { actor: draft.actor.trim(), device: draft.device.trim(), kind: draft.kind.trim() };
          restart();
          setTyped(next);
          const hash = hashForFilters(next);
          // replaceState: a filter is not a page of its own for the Back button, and no hashchange.
          if (window.location.hash !== hash) window.history.replaceState(null, "", hash);
        }}
      >
        {field(
          "actor",
          "Actor",
          `e.g. ${example ? example.name : "laptop"}, device:${example ? example.deviceId.slice(0, 8) : "3f2a9c1e"}…, dashboard:…, key:…`,
        )}
        {field(
          "device",
          "Device",
          `e.g. ${example ? example.name : "laptop"} or ${example ? example.deviceId.slice(0, 8) : "3f2a9c1e"}`,
        )}
        {field("kind", "Kind", "e.g. device or device.approve")}
        <button type="submit">Filter</button>
      </form>
      {resolved.ambiguous.map(({ field: name, value, count }) => (
        <p key={name} class="notice" data-testid="filter-ambiguous">
          {`${name === "actor" ? "Actor" : "Device"} “${value}” is ambiguous: ${count} devices have that name. Type its device id instead.`}
        </p>
      ))}
      <ErrorAlert error={newest.error} />
      {newest.data && shown.length === 0 && !blocked ? (
        <div class="empty">
          <p>No audit entry matches.</p>
        </div>
      ) : null}
      {shown.length > 0 ? (
        <div class="table-wrap">
          <StackTable columns={COLUMNS}>
            {shown.map((entry) => (
              <tr key={entry.id} data-testid="audit-row">
                <td data-label="Time">
                  <RelativeTime iso={entry.ts} />
                </td>
                <td data-label="Kind">
                  <code class="code-name">{entry.type}</code>
                </td>
                <td data-label="Outcome">
                  <span class={`outcome outcome-${entry.outcome}`}>{entry.outcome}</span>
                  {entry.code ? <div class="cell-sub">{entry.code}</div> : null}
                </td>
                <td data-label="Actor">
                  <Principal id={entry.actor} deviceNames={deviceNames} />
                </td>
                <td data-label="Device">
                  <Principal id={entry.subject} deviceNames={deviceNames} />
                </td>
                <td data-label="Address">{entry.address ?? "—"}</td>
                <td data-label="Details" class="details">
                  <Details details={entry.details} />
                </td>
              </tr>
            ))}
          </StackTable>
        </div>
      ) : null}
      <ErrorAlert error={olderError} />
      {shown.length > 0 && hasOlder ? (
        <p>
          <button type="button" disabled={olderBusy} onClick={() => void loadOlder()}>
            {olderBusy ? "Loading…" : "Load older"}
          </button>
        </p>
      ) : null}
    </section>
  );
}

/** An actor or subject; a device (`ID` or `device:ID`) also shows its name when the page knows it. */
function Principal({ id, deviceNames }: { id: string | null; deviceNames: Map<string, string> }) {
  if (!id) return <span class="muted">—</span>;
  const name = deviceNames.get(id.startsWith("device:") ? id.slice("device:".length) : id);
  if (!name) return <Token text={id} />;
  return (
    <>
      <div class="cell-main">{name}</div>
      <code class="cell-sub id" title={id}>
        {id}
      </code>
    </>
  );
}

/**
 * A stored identifier such as `dashboard:b6c9ab1e5901`: it may break after its `:` and nowhere
 * else, so a narrow column never splits the hex in the middle.
 */
function Token({ text }: { text: string }) {
  const colon = text.indexOf(":");
  if (colon < 0) return <code class="token">{text}</code>;
  return (
    <code class="token">
      {text.slice(0, colon + 1)}
      <wbr />
      {text.slice(colon + 1)}
    </code>
  );
}

/** One `key: value` line per detail; nested values as compact JSON text. */
function Details({ details }: { details: Record<string, unknown> }) {
  return (
    <>
      {Object.entries(details ?? {}).map(([key, value]) => (
        <div key={key}>
          <span class="muted">{key}:</span> {typeof value === "string" ? value : JSON.stringify(value)}
        </div>
      ))}
    </>
  );
}

function ChainState({ verdict }: { verdict: ChainVerdict | undefined }) {
  if (!verdict) return null;
  const text = verdict.ok
    ? `Chain verified: ${verdict.checked} entries`
    : `Chain broken at entry ${verdict.firstBroken?.seq ?? verdict.checked + 1}`;
  return (
    <p
      class={`chain-state ${verdict.ok ? "chain-ok" : "chain-broken"}`}
      data-testid="chain-state"
      title={verdict.firstBroken?.reason}
    >
      {text}
    </p>
  );
}
