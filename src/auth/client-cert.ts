import type { PeerCertificate, TLSSocket } from "node:tls";
import { GatehouseError } from "../protocol/errors.js";
import { certificateDigests, deviceIdOfCertificate, digestsOfFingerprint256 } from "../pki/fingerprint.js";
import { scopesForRole, type Principal } from "./roles.js";

const DEVICE_URI_PREFIX = "URI:urn:gatehouse:device:";

/** What the TLS layer established about a connection's client certificate, computed once per socket. */
export interface PeerIdentity {
  deviceId?: string;
  fingerprint?: string;
  /** RFC 8705 x5t#S256 of a certificate from our CA, for tokens bound to it. */
  thumbprint?: string;
  /** The certificate's notAfter: a keep-alive connection outliving it must stop authenticating. */
  validTo?: Date;
  /** The device a refused certificate names (unverified: for logs and failure history only). */
  claimedDeviceId?: string;
  error?: GatehouseError;
}

/** The parts of a device record this check needs; the gateway serves them from memory. */
export interface DeviceLookup {
  (deviceId: string): { status: string; role: string; kind: "node" | "operator" } | undefined;
}

const identities = new WeakMap<TLSSocket, PeerIdentity>();

/**
 * Device id of each certificate's key, by certificate fingerprint: parsing and canonicalising the
 * key costs a few hundred microseconds, and the same certificate comes back on every connection.
 */
const keyDeviceIds = new Map<string, string>();
const KEY_DEVICE_ID_CACHE_SIZE = 10_000;

function keyDeviceId(certFingerprint: string, der: Buffer): string | undefined {
  const known = keyDeviceIds.get(certFingerprint);
  if (known) return known;
  let deviceId: string;
  try {
    deviceId = deviceIdOfCertificate(der);
  } catch {
    return undefined;
  }
  if (keyDeviceIds.size >= KEY_DEVICE_ID_CACHE_SIZE) {
    keyDeviceIds.delete(keyDeviceIds.keys().next().value as string); // the oldest entry
  }
  keyDeviceIds.set(certFingerprint, deviceId);
  return deviceId;
}

/**
 * Reads the peer certificate of a TLS socket accepted with `requestCert: true,
 * rejectUnauthorized: false`, so that a refused certificate gets a named error instead of a reset.
 * Computed once per connection (cached on the socket): one `getPeerCertificate()`, whose SHA-256
 * (computed by Node's TLS layer) gives both the fingerprint and the RFC 8705 thumbprint; the
 * certificate is not hashed again.
 * The trust verdict (chain, CRL, validity) is OpenSSL's, made during the handshake and read here
 * from `socket.authorized` / `socket.authorizationError`.
 */
export function peerIdentity(socket: TLSSocket): PeerIdentity {
  const cached = identities.get(socket);
  if (cached) return cached;
  const identity = readPeerIdentity(socket);
  identities.set(socket, identity);
  return identity;
}

/**
 * The peer's certificate as Node's TLS layer describes it, or undefined when none was presented.
 * (`getPeerX509Certificate()` looks lighter but is not on Node 20: building an X509Certificate
 * object costs about twice as much CPU as this whole object, digests included.)
 */
function peerCertificate(socket: TLSSocket): PeerCertificate | undefined {
  const peer = typeof socket.getPeerCertificate === "function" ? socket.getPeerCertificate() : undefined;
  return peer?.raw ? peer : undefined;
}

function readPeerIdentity(socket: TLSSocket): PeerIdentity {
  const peer = peerCertificate(socket);
  if (!peer) return {};
  const { fingerprint, thumbprint } =
    digestsOfFingerprint256(peer.fingerprint256) ?? certificateDigests(peer.raw);
  const uri = (peer.subjectaltname ?? "").split(", ").find((name) => name.startsWith(DEVICE_URI_PREFIX));
  const claimedDeviceId = uri?.slice(DEVICE_URI_PREFIX.length);
  if (!socket.authorized) {
    const reason = String(socket.authorizationError ?? "unknown");
    if (reason === "CERT_HAS_EXPIRED") {
      return {
        fingerprint,
        ...(claimedDeviceId ? { claimedDeviceId } : {}),
        error: new GatehouseError("cert_expired", `the client certificate expired at ${peer.valid_to}`),
      };
    }
    if (reason === "CERT_REVOKED") {
      // The TLS layer's CRL named this certificate during the handshake.
      return {
        fingerprint,
        ...(claimedDeviceId ? { claimedDeviceId } : {}),
        error: new GatehouseError(
          "device_revoked",
          `the client certificate was revoked (refused by the gateway's CRL at the TLS handshake)`,
        ),
      };
    }
    if (reason === "CERT_NOT_YET_VALID") {
      return {
        fingerprint,
        ...(claimedDeviceId ? { claimedDeviceId } : {}),
        error: new GatehouseError(
          "cert_untrusted",
          `the client certificate is not valid before ${peer.valid_from}`,
          "Check this machine's clock.",
        ),
      };
    }
    return {
      fingerprint,
      error: new GatehouseError(
        "cert_untrusted",
        `the client certificate was not issued by this gateway's CA (${reason})`,
      ),
    };
  }
  if (!claimedDeviceId) {
    return {
      fingerprint,
      error: new GatehouseError("cert_untrusted", "the client certificate names no Gatehouse device"),
    };
  }
  if (keyDeviceId(fingerprint, peer.raw) !== claimedDeviceId) {
    // A device is its key: a certificate whose key is not the one its device id is derived from
    // (issued before keys were canonicalised, for a second encoding of a known key) is refused.
    return {
      fingerprint,
      claimedDeviceId,
      error: new GatehouseError(
        "cert_untrusted",
        `the client certificate's key is not the key of device ${claimedDeviceId}`,
        "Register again with `gatehouse node register --new-key` and ask the admin to approve it.",
      ),
    };
  }
  return {
    deviceId: claimedDeviceId,
    fingerprint,
    thumbprint,
    validTo: new Date(peer.valid_to),
  };
}

/** One function turns a client certificate into a principal: TLS verdict, then the device's state. */
export function authenticateClientCertificate(
  socket: TLSSocket,
  lookup: DeviceLookup,
  now = new Date(),
): Principal {
  const identity = peerIdentity(socket);
  if (identity.error?.code === "cert_expired" && identity.claimedDeviceId) {
    throw expiredWithReissueAdvice(
      identity.error,
      lookup(identity.claimedDeviceId),
      identity.claimedDeviceId,
    );
  }
  if (identity.error) throw identity.error;
  if (!identity.deviceId || !identity.fingerprint) {
    throw new GatehouseError("missing_credentials", "no client certificate was presented");
  }
  if (identity.validTo && identity.validTo.getTime() <= now.getTime()) {
    throw new GatehouseError(
      "cert_expired",
      `the client certificate expired at ${identity.validTo.toISOString()}`,
    );
  }
  const device = lookup(identity.deviceId);
  if (!device) {
    throw new GatehouseError("cert_untrusted", `device ${identity.deviceId} is not known to this gateway`);
  }
  switch (device.status) {
    case "approved":
      break;
    case "revoked":
      throw new GatehouseError("device_revoked", `device ${identity.deviceId} has been revoked`);
    case "denied":
      throw new GatehouseError("device_denied", `device ${identity.deviceId} was denied`);
    default:
      throw new GatehouseError("device_pending", `device ${identity.deviceId} is waiting for approval`);
  }
  return {
    kind: "certificate",
    subject: `device:${identity.deviceId}`,
    deviceId: identity.deviceId,
    deviceKind: device.kind,
    role: device.role,
    scopes: scopesForRole(device.role),
    credentialFingerprint: identity.fingerprint,
    ...(identity.validTo ? { expiresAt: identity.validTo } : {}),
  };
}

/** An expired certificate's refusal says whether the device can simply get a new one. */
function expiredWithReissueAdvice(
  error: GatehouseError,
  device: ReturnType<DeviceLookup>,
  deviceId: string,
): GatehouseError {
  if (device?.status === "approved") {
    return new GatehouseError(
      "cert_expired",
      `${error.message}; device ${deviceId} is still approved, so a new certificate can be issued`,
      "Run `gatehouse node register --gateway URL --ca-fingerprint FP` again: the approved key gets a new certificate at once, no admin needed.",
    );
  }
  return new GatehouseError(
    "cert_expired",
    `${error.message}; device ${deviceId} is ${device?.status ?? "unknown to this gateway"}, so it cannot be re-issued`,
    "Register again with a new key (`gatehouse node register --new-key`) and ask the admin to approve it.",
  );
}
