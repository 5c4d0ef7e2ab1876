import { useState } from "preact/hooks";
import { postJson } from "../api.js";
import { ErrorAlert } from "../components/error-alert.js";
import { ReasonInput } from "../components/reason-input.js";
import { RelativeTime } from "../components/relative-time.js";
import { StackTable } from "../components/stack-table.js";
import type { DeviceView } from "../types.js";

interface Props {
  devices: DeviceView[];
  /** The last version each node reported (from /api/v1/nodes), kept when it goes offline. */
  versions: ReadonlyMap<string, string>;
  canWrite: boolean;
  onChanged: () => void;
  /** Says what an action did, in the page's status line. */
  onDone: (message: string) => void;
}

/** The table's columns, in the order DeviceRow writes its cells; "Actions" follows for a role that can revoke. */
const COLUMNS = [
  "Name",
  "Status",
  "Role",
  "Online",
  "Last seen",
  "Certificate expires",
  "Platform",
  "Version",
];

/** Devices and nodes: every registered device, with the live session's version when online. */
export function DevicesPage({ devices, versions, canWrite, onChanged, onDone }: Props) {
  if (devices.length === 0) {
    return (
      <section class="empty">
        <p>No device has registered yet.</p>
      </section>
    );
  }
  return (
    <section class="table-wrap">
      <StackTable columns={canWrite ? [...COLUMNS, "Actions"] : COLUMNS}>
        {devices.map((device) => (
          <DeviceRow
            key={device.deviceId}
            device={device}
            version={versions.get(device.deviceId) ?? null}
            canWrite={canWrite}
            onChanged={onChanged}
            onDone={onDone}
          />
        ))}
      </StackTable>
    </section>
  );
}

interface RowProps {
  device: DeviceView;
  version: string | null;
  canWrite: boolean;
  onChanged: () => void;
  onDone: (message: string) => void;
}

function DeviceRow({ device, version, canWrite, onChanged, onDone }: RowProps) {
  const [confirming, setConfirming] = useState(false);
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();

  const revoke = async () => {
    setBusy(true);
    setError(undefined);
    const trimmed = reason.trim();
    try {
      await postJson(
        `/api/v1/devices/${encodeURIComponent(device.deviceId)}/revoke`,
        trimmed ? { reason: trimmed } : {},
      );
      setConfirming(false);
      onDone(`Revoked ${device.name}.`);
      onChanged();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };

  return (
    <tr data-testid="device-row" data-device-id={device.deviceId}>
      <td data-label="Name">
        <div class="cell-main">{device.name}</div>
        <div class="cell-sub">{device.kind} device</div>
      </td>
      <td data-label="Status">
        <span class={`status status-${device.status}`}>{device.status}</span>
        {device.statusReason ? <div class="cell-sub">{device.statusReason}</div> : null}
      </td>
      <td data-label="Role">{device.role}</td>
      <td data-label="Online">
        <span class={device.online ? "online" : "offline"}>{device.online ? "online" : "offline"}</span>
      </td>
      <td data-label="Last seen">
        {device.online ? <span>now</span> : <RelativeTime iso={device.lastSeen} />}
      </td>
      <td data-label="Certificate expires">
        {/* A revoked or denied device's certificate no longer counts: no expiry to show. */}
        {device.status === "approved" ? (
          <RelativeTime iso={device.certExpiresAt} />
        ) : (
          <span class="muted">—</span>
        )}
      </td>
      <td data-label="Platform">{device.platform ?? "—"}</td>
      <td data-label="Version">{version ?? "—"}</td>
      {canWrite ? (
        <td data-label="Actions" class="row-actions">
          {device.status !== "approved" ? null : confirming ? (
            <div class="revoke-confirm">
              <ReasonInput label="Revoke reason" value={reason} disabled={busy} onChange={setReason} />
              <button type="button" class="danger" disabled={busy} onClick={() => void revoke()}>
                Confirm revoke
              </button>
              <button type="button" disabled={busy} onClick={() => setConfirming(false)}>
                Cancel
              </button>
            </div>
          ) : (
            <button type="button" class="danger-outline" onClick={() => setConfirming(true)}>
              Revoke
            </button>
          )}
          <ErrorAlert error={error} />
        </td>
      ) : null}
    </tr>
  );
}
