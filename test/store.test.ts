import { GENESIS_HASH, verifyAuditChain } from "../src/audit/chain.js";
import fs from "node:fs";
import { describe, expect, it } from "vitest";
import type { CertificateRecord, Store } from "../src/store/index.js";
import { deviceRecord, registrationRecord, sessionRecord } from "./fixtures/store.js";
import { DIALECTS, eachDialectStore, type Dialect, type DialectStore } from "./fixtures/store-dialects.js";

function certificate(serial: string, deviceId: string): CertificateRecord {
  return {
    serial,
    deviceId,
    fingerprint: `sha256:cert-${serial}`,
    notBefore: "2025-01-01T00:00:00.000Z",
    notAfter: "2025-01-31T00:00:00.000Z",
    issuedAt: "2025-01-01T00:05:00.000Z",
    pem: `-----BEGIN CERTIFICATE----- ${serial}`,
  };
}

// The same suite on both databases: one Store, whichever dialect serves it.
for (const { dialect, skip } of DIALECTS)
  describe.skipIf(skip)(`${dialect} store`, () => storeSuite(dialect));

function storeSuite(dialect: Dialect): void {
  let database: DialectStore;
  let store: Store;
  eachDialectStore(dialect, (opened) => {
    database = opened;
    store = opened.store;
  });

  it.skipIf(dialect !== "sqlite")("creates the database file owner-only, WAL included", async () => {
    const file = database.file!;
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    await store.upsertDevice(deviceRecord("d1"));
    expect(fs.statSync(`${file}-wal`).mode & 0o777).toBe(0o600);
  });

  it("runs migrations again without error", async () => {
    await store.migrate();
    await store.close();
    store = await database.open();
    expect(await store.listDevices()).toEqual([]);
  });

  it("upserts, gets, lists and updates devices", async () => {
    await store.upsertDevice(deviceRecord("d2", { createdAt: "2025-01-02T00:00:00.000Z" }));
    await store.upsertDevice(deviceRecord("d1"));
    expect(await store.getDevice("d1")).toEqual(deviceRecord("d1"));
    expect(await store.getDevice("nope")).toBeUndefined();
    expect((await store.listDevices()).map((d) => d.deviceId)).toEqual(["d1", "d2"]);

    // Re-registration updates the mutable fields but keeps creation time and role.
    await store.upsertDevice(
      deviceRecord("d1", {
        name: "renamed",
        publicKey: "key-new",
        keyFingerprint: "sha256:new",
        userCode: "WXYZ-0000",
        role: "admin",
        createdAt: "2030-01-01T00:00:00.000Z",
        updatedAt: "2025-01-03T00:00:00.000Z",
      }),
    );
    const d1 = await store.getDevice("d1");
    expect(d1).toMatchObject({
      name: "renamed",
      publicKey: "key-new",
      keyFingerprint: "sha256:new",
      userCode: "WXYZ-0000",
      role: "node",
      createdAt: "2025-01-01T00:00:00.000Z",
      updatedAt: "2025-01-03T00:00:00.000Z",
    });

    const updated = await store.updateDevice("d2", { status: "denied", statusReason: "unknown host" });
    expect(updated).toMatchObject({ deviceId: "d2", status: "denied", statusReason: "unknown host" });
    expect(await store.updateDevice("nope", { status: "denied" })).toBeUndefined();
    expect((await store.listDevices({ status: "denied" })).map((d) => d.deviceId)).toEqual(["d2"]);
    expect((await store.listDevices({ status: "pending" })).map((d) => d.deviceId)).toEqual(["d1"]);

    await store.touchDevices([
      { deviceId: "d1", lastSeen: "2025-01-04T00:00:00.000Z", address: "10.0.0.9" },
      { deviceId: "d2", lastSeen: "2025-01-04T00:00:00.000Z", address: null },
    ]);
    expect(await store.getDevice("d1")).toMatchObject({
      lastSeen: "2025-01-04T00:00:00.000Z",
      address: "10.0.0.9",
    });
    expect(await store.getDevice("d2")).toMatchObject({
      lastSeen: "2025-01-04T00:00:00.000Z",
      address: "10.0.0.1",
    });
  });

  it("does not let an upsert rewrite an approved device", async () => {
    await store.upsertDevice(deviceRecord("d1", { status: "approved" }));
    await store.upsertDevice(deviceRecord("d1", { publicKey: "key-attacker", status: "pending" }));
    expect(await store.getDevice("d1")).toMatchObject({ publicKey: "key-d1", status: "approved" });
  });

  it("creates, finds and expires registrations", async () => {
    await store.upsertDevice(deviceRecord("d1"));
    await store.upsertDevice(deviceRecord("d2"));
    await store.createRegistration(registrationRecord("r1", "d1", { userCode: "AAAA-1111" }));
    await store.createRegistration(
      registrationRecord("r2", "d2", { userCode: "BBBB-2222", expiresAt: "2025-01-01T01:00:00.000Z" }),
    );

    expect(await store.getRegistration("r1")).toEqual(
      registrationRecord("r1", "d1", { userCode: "AAAA-1111" }),
    );
    expect((await store.findRegistrationByUserCode("BBBB-2222"))?.requestId).toBe("r2");
    expect(await store.findRegistrationByUserCode("ZZZZ-9999")).toBeUndefined();
    expect((await store.findPendingRegistrationByDevice("d1"))?.requestId).toBe("r1");

    const now = "2025-01-01T00:30:00.000Z";
    expect(await store.countPendingRegistrations(now)).toBe(1);
    expect(await store.expireRegistrations(now)).toBe(1);
    expect(await store.expireRegistrations(now)).toBe(0);
    expect((await store.getRegistration("r1"))?.status).toBe("expired");
    expect((await store.getRegistration("r2"))?.status).toBe("pending");
    expect(await store.findPendingRegistrationByDevice("d1")).toBeUndefined();

    await store.updateRegistration("r2", { status: "denied", reason: "not ours" });
    expect(await store.getRegistration("r2")).toMatchObject({ status: "denied", reason: "not ours" });
  });

  it("rejects a registration for an unknown device", async () => {
    await expect(store.createRegistration(registrationRecord("r1", "ghost"))).rejects.toThrow(
      /FOREIGN KEY|foreign key/,
    );
  });

  it("records an approval atomically and durably", async () => {
    await store.upsertDevice(deviceRecord("d1"));
    await store.createRegistration(registrationRecord("r1", "d1"));
    const at = "2025-01-01T00:05:00.000Z";
    const result = await store.recordApproval({
      deviceId: "d1",
      requestId: null,
      role: "node",
      at,
      certificate: certificate("01", "d1"),
    });
    expect(result.device).toMatchObject({
      status: "approved",
      approvedAt: at,
      certFingerprint: "sha256:cert-01",
      certExpiresAt: "2025-01-31T00:00:00.000Z",
    });
    expect(result.registration).toMatchObject({
      requestId: "r1",
      status: "approved",
      certificate: certificate("01", "d1").pem,
    });
    expect(result.certificate).toEqual(certificate("01", "d1"));

    await store.close();
    store = await database.open();
    expect(await store.getDevice("d1")).toEqual(result.device);
    expect(await store.getRegistration("r1")).toEqual(result.registration);
    expect(await store.listCertificates("d1")).toEqual([certificate("01", "d1")]);
  });

  it("rolls an approval back when any step fails", async () => {
    await store.upsertDevice(deviceRecord("d1"));
    await store.createRegistration(registrationRecord("r1", "d1"));
    await store.insertCertificate(certificate("01", "d1"));

    // The certificate insert comes last and collides on its serial: nothing may stay behind.
    await expect(
      store.recordApproval({
        deviceId: "d1",
        requestId: "r1",
        role: "node",
        at: "2025-01-02T00:00:00.000Z",
        certificate: certificate("01", "d1"),
      }),
    ).rejects.toThrow();
    expect(await store.getDevice("d1")).toEqual(deviceRecord("d1"));
    expect((await store.getRegistration("r1"))?.status).toBe("pending");

    await expect(
      store.recordApproval({
        deviceId: "d1",
        requestId: "nope",
        role: "node",
        at: "2025-01-02T00:00:00.000Z",
        certificate: certificate("02", "d1"),
      }),
    ).rejects.toMatchObject({ code: "not_found" });
    expect(await store.getDevice("d1")).toEqual(deviceRecord("d1"));
    expect(await store.listCertificates("d1")).toEqual([certificate("01", "d1")]);
  });

  it("takes an enroll token's use in the approval's transaction: both happen, or neither", async () => {
    const token = {
      tokenId: "enr_1",
      hash: "h1",
      name: "ci",
      role: "node",
      namePrefix: null,
      usesTotal: 1,
      usesLeft: 1,
      createdAt: "2025-01-01T00:00:00.000Z",
      expiresAt: "2025-01-09T00:00:00.000Z",
      revokedAt: null,
      source: "created",
      lastUsedAt: null,
    };
    await store.createEnrollToken(token);
    for (const id of ["d1", "d2"]) {
      await store.upsertDevice(deviceRecord(id));
      // Still pending at the approval below (an expired request is never approved).
      await store.createRegistration(
        registrationRecord(`r-${id}`, id, { expiresAt: "2025-01-03T00:00:00.000Z" }),
      );
    }
    const approve = (id: string, serial: string) =>
      store.recordApproval({
        deviceId: id,
        requestId: `r-${id}`,
        role: "node",
        at: "2025-01-02T00:00:00.000Z",
        certificate: certificate(serial, id),
        enrollTokenId: "enr_1",
      });
    await approve("d1", "01");
    expect((await store.findEnrollTokenByHash("h1"))?.usesLeft).toBe(0);
    // The last use is gone: the second approval fails whole, and d2 stays pending.
    await expect(approve("d2", "02")).rejects.toMatchObject({ code: "invalid_token" });
    expect(await store.getDevice("d2")).toEqual(deviceRecord("d2"));
    expect(await store.listCertificates("d2")).toEqual([]);
  });

  it("lets an approval that raced a revocation lose instead of undoing it", async () => {
    await store.upsertDevice(deviceRecord("d1"));
    await store.createRegistration(registrationRecord("r1", "d1"));
    // The admin revoked the device while its approval was being prepared.
    await store.updateDevice("d1", { status: "revoked", revokedAt: "2025-01-02T00:00:00.000Z" });
    await expect(
      store.recordApproval({
        deviceId: "d1",
        requestId: "r1",
        role: "node",
        at: "2025-01-02T00:00:01.000Z",
        certificate: certificate("01", "d1"),
      }),
    ).rejects.toMatchObject({ code: "invalid_request", message: expect.stringContaining("revoked") });
    expect((await store.getDevice("d1"))?.status).toBe("revoked");
    expect(await store.listCertificates("d1")).toEqual([]);
    expect((await store.getRegistration("r1"))?.status).toBe("pending");
  });

  it("writes a registration whose approval fails not at all: no device, no request, no certificate", async () => {
    await store.createEnrollToken({
      tokenId: "enr_1",
      hash: "h1",
      name: "ci",
      role: "node",
      namePrefix: null,
      usesTotal: 1,
      usesLeft: 0,
      createdAt: "2025-01-01T00:00:00.000Z",
      expiresAt: "2025-01-09T00:00:00.000Z",
      revokedAt: null,
      source: "created",
      lastUsedAt: null,
    });
    await expect(
      store.recordRegistration({
        device: deviceRecord("d1"),
        registration: registrationRecord("r1", "d1"),
        approval: {
          role: "node",
          at: "2025-01-01T00:00:00.000Z",
          certificate: certificate("01", "d1"),
          enrollTokenId: "enr_1",
        },
      }),
    ).rejects.toMatchObject({ code: "invalid_token" });
    expect(await store.getDevice("d1")).toBeUndefined();
    expect(await store.getRegistration("r1")).toBeUndefined();
    expect(await store.listCertificates("d1")).toEqual([]);
  });

  it("holds the pending cap when registrations race for the last places", async () => {
    const now = "2025-01-01T00:00:00.000Z";
    // One stale request: it no longer counts, and an accepted registration marks it expired.
    await store.upsertDevice(deviceRecord("old"));
    await store.createRegistration(registrationRecord("r-old", "old", { expiresAt: now }));
    for (const id of ["p1", "p2", "p3"])
      await store.recordRegistration({
        device: deviceRecord(id),
        registration: registrationRecord(`r-${id}`, id),
        maxPending: 5,
      });

    const ids = Array.from({ length: 10 }, (_, i) => `n${i}`);
    const outcomes = await Promise.all(
      ids.map((id) =>
        store.recordRegistration({
          device: deviceRecord(id),
          registration: registrationRecord(`r-${id}`, id),
          maxPending: 5,
        }),
      ),
    );
    expect(outcomes.filter((o) => o.outcome === "pending")).toHaveLength(2);
    expect(outcomes.filter((o) => o.outcome === "queue_full")).toHaveLength(8);
    expect(await store.countPendingRegistrations(now)).toBe(5);
    // The refused ones left no device row behind.
    expect(await store.listDevices({ status: "pending" })).toHaveLength(6);
    expect((await store.getRegistration("r-old"))?.status).toBe("expired");
  });

  it("answers a key asking again, even many times at once, with its one waiting request", async () => {
    const ask = (requestId: string) =>
      store.recordRegistration({
        device: deviceRecord("d1"),
        registration: registrationRecord(requestId, "d1"),
        maxPending: 5,
        reusePending: true,
      });
    const outcomes = await Promise.all(["r1", "r2", "r3", "r4"].map(ask));
    expect(outcomes.map((o) => o.outcome).sort()).toEqual(["pending", "waiting", "waiting", "waiting"]);
    const answered = outcomes.map((o) => ("registration" in o ? o.registration.requestId : undefined));
    expect(new Set(answered).size).toBe(1);
    expect(await store.countPendingRegistrations("2025-01-01T00:00:00.000Z")).toBe(1);
  });

  it("opens and closes sessions", async () => {
    await store.upsertDevice(deviceRecord("d1"));
    const session = (id: string) => sessionRecord(id, "d1");
    await store.openSession(session("s1"));
    await store.openSession(session("s2"));
    await store.openSession(session("s3"));
    await store.closeSession("s1", "2025-01-01T01:00:00.000Z", 1000, "bye");
    // A second close must not rewrite the first.
    await store.closeSession("s1", "2025-01-01T02:00:00.000Z", 4401, "late");
    expect(await store.closeAllOpenSessions("2025-01-01T03:00:00.000Z", "gateway restarted")).toBe(2);
    expect(await store.closeAllOpenSessions("2025-01-01T04:00:00.000Z", "gateway restarted")).toBe(0);

    // The rows as the database holds them, read past the store.
    const rows = await database.rows("sessions", "session_id");
    expect(rows).toEqual([
      {
        session_id: "s1",
        device_id: "d1",
        instance_id: null,
        address: "10.0.0.1",
        connected_at: "2025-01-01T00:00:00.000Z",
        disconnected_at: "2025-01-01T01:00:00.000Z",
        close_code: 1000,
        close_reason: "bye",
      },
      {
        session_id: "s2",
        device_id: "d1",
        instance_id: null,
        address: "10.0.0.1",
        connected_at: "2025-01-01T00:00:00.000Z",
        disconnected_at: "2025-01-01T03:00:00.000Z",
        close_code: null,
        close_reason: "gateway restarted",
      },
      {
        session_id: "s3",
        device_id: "d1",
        instance_id: null,
        address: "10.0.0.1",
        connected_at: "2025-01-01T00:00:00.000Z",
        disconnected_at: "2025-01-01T03:00:00.000Z",
        close_code: null,
        close_reason: "gateway restarted",
      },
    ]);
  });

  it("appends and lists audit events", async () => {
    const event = (subject: string | null, n: number) => ({
      ts: `2025-01-01T00:00:0${n}.000Z`,
      type: "device.approved",
      outcome: "success" as const,
      actor: "admin",
      subject,
      address: null,
      code: null,
      details: { n, nested: { role: "node" }, list: [1, 2] },
    });
    const ids = [];
    for (let n = 1; n <= 2; n++)
      ids.push(...(await store.appendAudit([{ event: event(n % 2 ? "d1" : "d2", n) }])));
    // A batch chains in order, in one commit, after what is there.
    ids.push(...(await store.appendAudit([3, 4, 5].map((n) => ({ event: event(n % 2 ? "d1" : "d2", n) })))));
    expect(ids).toEqual([1, 2, 3, 4, 5]);

    const all = await store.listAudit();
    expect(all).toHaveLength(5);
    expect(all[0]).toMatchObject({ id: 1, ...event("d1", 1) });
    // Each entry chains to the one before it, and the chain verifies as written.
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(all[0]!.prevHash).toBe(GENESIS_HASH);
    expect(all[1]!.prevHash).toBe(all[0]!.hash);
    expect(verifyAuditChain(all)).toMatchObject({ ok: true, checked: 5 });
    expect((await store.listAudit({ afterId: 2, limit: 2 })).map((e) => e.id)).toEqual([3, 4]);
    expect((await store.listAudit({ subject: "d2" })).map((e) => e.id)).toEqual([2, 4]);
    expect((await store.listAudit({ subject: "d1", afterId: 1 })).map((e) => e.id)).toEqual([3, 5]);
    // Newest first, and the type filters: a prefix ending in "." and a type with everything under it.
    expect((await store.listAudit({ order: "desc", beforeId: 5, limit: 2 })).map((e) => e.id)).toEqual([
      4, 3,
    ]);
    expect((await store.listAudit({ type: "device." })).map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    expect((await store.listAudit({ type: "device" })).map((e) => e.id)).toEqual([1, 2, 3, 4, 5]);
    expect(await store.listAudit({ type: "device.approved.x" })).toEqual([]);
    expect((await store.listAudit({ actor: "admin", subject: "device:d2" })).map((e) => e.id)).toEqual([
      2, 4,
    ]);
  });

  it("finds the first altered, removed or reordered audit entry", async () => {
    for (let n = 1; n <= 6; n++) {
      const event = {
        ts: `2025-01-01T00:00:0${n}.000Z`,
        type: "t",
        outcome: "success" as const,
        actor: null,
        subject: null,
        address: null,
        code: null,
        details: { n },
      };
      await store.appendAudit([{ event }]);
    }
    const all = await store.listAudit();
    const altered = all.map((e) => (e.seq === 3 ? { ...e, detailsJson: '{"n":33}' } : e));
    expect(verifyAuditChain(altered).firstBroken).toMatchObject({
      seq: 3,
      reason: expect.stringContaining("altered"),
    });
    const removed = all.filter((e) => e.seq !== 4);
    expect(verifyAuditChain(removed).firstBroken).toMatchObject({
      seq: 5,
      reason: expect.stringContaining("missing"),
    });
    const reordered = [all[0]!, all[2]!, all[1]!, ...all.slice(3)];
    expect(verifyAuditChain(reordered).firstBroken).toMatchObject({
      seq: 3,
      reason: expect.stringContaining("moved"),
    });
  });

  it("writes an exec's history row with its audit entry, or neither", async () => {
    const event = (n: number) => ({
      ts: `2025-01-01T00:00:0${n}.000Z`,
      type: "exec.result",
      outcome: "success" as const,
      actor: "key:k1",
      subject: "d1",
      address: null,
      code: null,
      details: { n },
    });
    const exec = (execId: string) => ({
      execId,
      deviceId: "d1",
      requestedBy: "key:k1",
      command: "uname",
      args: '["-a"]',
      requestedAt: "2025-01-01T00:00:00.000Z",
      finishedAt: "2025-01-01T00:00:01.000Z",
      outcome: "completed",
      exitCode: 0,
      durationMs: 12,
      stdoutBytes: 80,
      stderrBytes: 0,
      code: null,
    });
    await store.appendAudit([{ event: event(1), exec: exec("exe_1") }]);
    expect(await store.listExecs("d1")).toEqual([exec("exe_1")]);

    // The second write of this batch fails (a duplicate id): the whole batch is rolled back.
    await expect(
      store.appendAudit([
        { event: event(2), exec: exec("exe_2") },
        { event: event(3), exec: exec("exe_1") },
      ]),
    ).rejects.toThrow();
    expect((await store.listExecs("d1")).map((e) => e.execId)).toEqual(["exe_1"]);
    const audit = await store.listAudit();
    expect(audit).toHaveLength(1);
    expect(verifyAuditChain(audit)).toMatchObject({ ok: true, checked: 1 });
  });
}
