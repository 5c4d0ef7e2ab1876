import { useState } from "preact/hooks";
import { getJson } from "../api.js";
import { ErrorAlert } from "../components/error-alert.js";
import { RelativeTime } from "../components/relative-time.js";
import type { AuditEntry, ChainVerdict } from "../types.js";
import { useResource } from "../use-resource.js";

/** The API pages oldest first: read pages of PAGE until the end and keep the newest SHOWN. */
const PAGE = 1000;
const SHOWN = 200;

interface Filters {
  actor: string;
  subject: string;
  type: string;
}

async function loadNewest(filters: Filters): Promise<AuditEntry[]> {
  let newest: AuditEntry[] = [];
  let afterId = 0;
  for (;;) {
    const query = new URLSearchParams({ afterId: String(afterId), limit: String(PAGE) });
    for (const [name, value] of Object.entries(filters)) if (value) query.set(name, value);
    const { entries } = await getJson<{ entries: AuditEntry[] }>(`/api/v1/audit?${query.toString()}`);
    newest = newest.concat(entries).slice(-SHOWN);
    const last = entries[entries.length - 1];
    if (entries.length < PAGE || !last) return newest.reverse();
    afterId = last.id;
  }
}

const loadVerdict = () => getJson<ChainVerdict>("/api/v1/audit/verify");

/** Audit: the log, newest first, filtered by actor, device (subject) and kind (type or `prefix.`). */
export function AuditPage({ canRead, deviceNames }: { canRead: boolean; deviceNames: Map<string, string> }) {
  if (!canRead) {
    return (
      <section class="empty">
        <p>Your role cannot read the audit log.</p>
      </section>
    );
  }
  return <AuditLog deviceNames={deviceNames} />;
}

function AuditLog({ deviceNames }: { deviceNames: Map<string, string> }) {
  const [draft, setDraft] = useState<Filters>({ actor: "", subject: "", type: "" });
  const [filters, setFilters] = useState<Filters>(draft);
  const entries = useResource(["audit"], JSON.stringify(filters), () => loadNewest(filters));
  const verdict = useResource(["audit"], "", loadVerdict);

  const field = (name: keyof Filters, label: string, placeholder: string) => (
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
          setFilters({ actor: draft.actor.trim(), subject: draft.subject.trim(), type: draft.type.trim() });
        }}
      >
        {field("actor", "Actor", "e.g. admin")}
        {field("subject", "Device", "device id")}
        {field("type", "Kind", "e.g. device.")}
        <button type="submit">Filter</button>
      </form>
      <ErrorAlert error={entries.error} />
      {entries.data && entries.data.length === 0 ? (
        <div class="empty">
          <p>No audit entry matches.</p>
        </div>
      ) : null}
      {entries.data && entries.data.length > 0 ? (
        <div class="table-wrap">
          <table class="stack">
            <thead>
              <tr>
                <th scope="col">Time</th>
                <th scope="col">Kind</th>
                <th scope="col">Outcome</th>
                <th scope="col">Actor</th>
                <th scope="col">Device</th>
                <th scope="col">Address</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody>
              {entries.data.map((entry) => (
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
            </tbody>
          </table>
        </div>
      ) : null}
    </section>
  );
}

/** An actor or subject; a device (`ID` or `device:ID`) also shows its name when the page knows it. */
function Principal({ id, deviceNames }: { id: string | null; deviceNames: Map<string, string> }) {
  if (!id) return <span class="muted">—</span>;
  const name = deviceNames.get(id.startsWith("device:") ? id.slice("device:".length) : id);
  if (!name) return <span class="break">{id}</span>;
  return (
    <>
      <div class="cell-main">{name}</div>
      <code class="cell-sub id" title={id}>
        {id}
      </code>
    </>
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
