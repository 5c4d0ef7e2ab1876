import { getJson } from "../api.js";
import { HintText } from "../components/command.js";
import { ErrorAlert } from "../components/error-alert.js";
import { RelativeTime } from "../components/relative-time.js";
import { StackTable } from "../components/stack-table.js";
import { absoluteTime, fingerprintPrefix } from "../format.js";
import type { Refusal, RefusalList } from "../types.js";
import { useResource } from "../use-resource.js";

// All the gateway keeps (MAX_RECENT_REFUSALS in src/gateway/failures.ts).
const LIMIT = 200;

/** The table's columns, in the order RefusalRow writes its cells. */
const COLUMNS = ["Time", "Address", "Code", "Device", "Credential", "Description", "Hint"];

const loadRefusals = () => getJson<RefusalList>(`/api/v1/refusals?limit=${LIMIT}`);

/**
 * Refusals: the last refused attempts, newest first — why a node cannot connect. Each row says
 * what the refused reply said (description and hint), which device it was (by name), and which
 * certificate (its fingerprint, next to the device's key fingerprint that the node's screen shows).
 */
export function RefusalsPage() {
  const { data, error } = useResource(["refusals"], "", loadRefusals);
  const refusals = data?.refusals;
  return (
    <section>
      <ErrorAlert error={error} />
      {refusals && refusals.length === 0 ? (
        <div class="empty">
          <p>No refused attempt since the gateway started.</p>
        </div>
      ) : null}
      {refusals && refusals.length > 0 ? (
        <div class="table-wrap">
          <StackTable columns={COLUMNS}>
            {refusals.map((refusal, index) => (
              <RefusalRow key={`${refusal.at}-${index}`} refusal={refusal} />
            ))}
          </StackTable>
        </div>
      ) : null}
      {data ? (
        <p class="muted" data-testid="refusals-since">
          Refusals since the gateway started at {absoluteTime(data.since)}; older ones are in the audit log.
        </p>
      ) : null}
    </section>
  );
}

function RefusalRow({ refusal }: { refusal: Refusal }) {
  return (
    <tr data-testid="refusal-row">
      <td data-label="Time">
        <RelativeTime iso={refusal.at} />
      </td>
      <td data-label="Address">{refusal.address}</td>
      <td data-label="Code">
        <code class="code-name">{refusal.code}</code>
        <div class="cell-sub">{refusal.route}</div>
      </td>
      <td data-label="Device" data-testid="refusal-device">
        {refusal.deviceName !== undefined ? (
          <span title={refusal.deviceId}>{refusal.deviceName}</span>
        ) : (
          // A device id this gateway does not know (a forged or forgotten certificate) stays in the title.
          <span class="muted" title={refusal.deviceId}>
            —
          </span>
        )}
        {refusal.deviceKeyFingerprint ? (
          <div class="cell-sub">
            key <code>{refusal.deviceKeyFingerprint}</code>
          </div>
        ) : null}
      </td>
      <td data-label="Credential">
        <div>{refusal.credential}</div>
        {refusal.fingerprint ? (
          <div class="cell-sub">
            {refusal.credential === "client-certificate" ? "certificate " : ""}
            <code title={refusal.fingerprint}>{fingerprintPrefix(refusal.fingerprint)}</code>
          </div>
        ) : null}
      </td>
      <td data-label="Description" data-testid="refusal-description">
        {refusal.description}
      </td>
      <td data-label="Hint" class="hint-cell" data-testid="refusal-hint">
        <HintText text={refusal.hint} />
      </td>
    </tr>
  );
}
