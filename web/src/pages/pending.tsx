import { useState } from "preact/hooks";
import { postJson } from "../api.js";
import { ErrorAlert } from "../components/error-alert.js";
import { ReasonInput } from "../components/reason-input.js";
import { RelativeTime } from "../components/relative-time.js";
import { fingerprintPrefix } from "../format.js";
import type { DeviceView } from "../types.js";

/** The roles an admin can grant from the card; `node` first, as `devices approve` defaults to it. */
const ROLES = ["node", "operator", "viewer", "admin"];

interface Props {
  devices: DeviceView[];
  canWrite: boolean;
  onChanged: () => void;
  /** Says what an action did, in the page's status line. */
  onDone: (message: string) => void;
}

/** Said beside the select when it grants admin: an approval that is easy to give by mistake. */
export const ADMIN_WARNING = "admin can approve devices and make keys.";

/** Pending: one card per device waiting for approval, oldest first (the order they asked in). */
export function PendingPage({ devices, canWrite, onChanged, onDone }: Props) {
  const pending = devices.filter((device) => device.status === "pending");
  if (pending.length === 0) {
    return (
      <section class="empty">
        <p>No device is waiting for approval.</p>
        <p class="muted">
          A node that runs <code>gatehouse node register</code> shows up here at once, with the code it
          prints.
        </p>
      </section>
    );
  }
  return (
    <section>
      <p class="section-lead">
        {pending.length === 1
          ? "1 device is waiting for approval."
          : `${pending.length} devices are waiting for approval.`}
      </p>
      <div class="cards">
        {pending.map((device) => (
          <PendingCard
            key={device.deviceId}
            device={device}
            canWrite={canWrite}
            onChanged={onChanged}
            onDone={onDone}
          />
        ))}
      </div>
    </section>
  );
}

function PendingCard({
  device,
  canWrite,
  onChanged,
  onDone,
}: { device: DeviceView } & Omit<Props, "devices">) {
  const [role, setRole] = useState("node");
  const [reason, setReason] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();

  const act = async (action: "approve" | "deny") => {
    setBusy(true);
    setError(undefined);
    const trimmed = reason.trim();
    const body = action === "approve" ? { role } : trimmed ? { reason: trimmed } : {};
    try {
      await postJson(`/api/v1/devices/${encodeURIComponent(device.deviceId)}/${action}`, body);
      onDone(action === "approve" ? `Approved ${device.name} as ${role}.` : `Denied ${device.name}.`);
      onChanged();
    } catch (failure) {
      setError(failure);
    } finally {
      setBusy(false);
    }
  };

  const labelId = `code-${device.deviceId}`;
  return (
    <article class="card pending-card" data-testid="pending-card" data-device-id={device.deviceId}>
      <div class="pending-head">
        <div>
          <div class="label" id={labelId}>
            User code
          </div>
          <div class="user-code" data-testid="user-code" aria-labelledby={labelId}>
            {device.userCode ?? "—"}
          </div>
        </div>
        <div class="pending-age">
          asked <RelativeTime iso={device.createdAt} />
        </div>
      </div>
      <p class="hint-line">Approve only if this code matches the one on the node’s screen.</p>
      <h2 class="device-name">{device.name}</h2>
      <dl class="facts">
        <dt>Kind</dt>
        <dd>{device.kind}</dd>
        <dt>Platform</dt>
        <dd>{device.platform ?? "—"}</dd>
        <dt>Address</dt>
        <dd>{device.address ?? "—"}</dd>
        <dt>Key</dt>
        <dd>
          <code title={device.fingerprint}>{fingerprintPrefix(device.fingerprint)}</code>
        </dd>
      </dl>
      {canWrite ? (
        <div class="actions">
          <div class="action-group">
            <select
              aria-label="Role"
              value={role}
              disabled={busy}
              onChange={(event) => setRole(event.currentTarget.value)}
            >
              {ROLES.map((name) => (
                <option key={name} value={name}>
                  {name}
                </option>
              ))}
            </select>
            <button type="button" class="primary" disabled={busy} onClick={() => void act("approve")}>
              Approve
            </button>
            {role === "admin" ? (
              <p class="role-warning" data-testid="role-warning">
                {ADMIN_WARNING}
              </p>
            ) : null}
          </div>
          <div class="action-group">
            <ReasonInput label="Reason" value={reason} disabled={busy} onChange={setReason} />
            <button type="button" class="danger" disabled={busy} onClick={() => void act("deny")}>
              Deny
            </button>
          </div>
        </div>
      ) : (
        <p class="muted">Your role can see this request but not approve or deny it.</p>
      )}
      <ErrorAlert error={error} />
    </article>
  );
}
