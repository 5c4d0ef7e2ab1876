import type { DeviceView } from "../protocol/messages.js";
import { formatUserCode } from "../protocol/messages.js";
import type { DeviceRecord } from "../store/types.js";
import type { RecordedFailure } from "./failures.js";

export function deviceView(
  device: DeviceRecord,
  online: boolean,
  failures: RecordedFailure[] = [],
): DeviceView {
  return {
    deviceId: device.deviceId,
    kind: device.kind,
    name: device.name,
    status: device.status,
    role: device.role,
    userCode: device.userCode ? formatUserCode(device.userCode) : null,
    fingerprint: device.keyFingerprint,
    platform: device.platform,
    address: device.address,
    online,
    lastSeen: online ? new Date().toISOString() : device.lastSeen,
    certExpiresAt: device.certExpiresAt,
    certFingerprint: device.certFingerprint,
    createdAt: device.createdAt,
    approvedAt: device.approvedAt,
    revokedAt: device.revokedAt,
    statusReason: device.statusReason,
    recentFailures: failures.map(({ at, code, address, route, credential }) => ({
      at,
      code,
      address,
      route,
      credential,
    })),
  };
}
