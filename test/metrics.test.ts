/**
 * The gateway's metrics as a scraper reads them: each named method moves its own series and no
 * other, every label takes values from a fixed set, and the whole text parses as Prometheus text.
 */
import { describe, expect, it } from "vitest";
import { GatewayMetrics } from "../src/gateway/metrics.js";
import { ERROR_CATALOGUE, type ErrorCode } from "../src/protocol/errors.js";
import {
  bucket,
  family,
  labelSets,
  parseScrape,
  seriesValues,
  value,
  type Scrape,
} from "./metrics-scrape.js";

function metricsWith(sources: { liveSessions?: number; auditQueueDepth?: number } = {}): GatewayMetrics {
  return new GatewayMetrics({
    liveSessions: () => sources.liveSessions ?? 0,
    auditQueueDepth: () => sources.auditQueueDepth ?? 0,
  });
}

async function scrape(metrics: GatewayMetrics): Promise<Scrape> {
  return parseScrape(await metrics.render());
}

/** The series whose value differs between two scrapes, with the difference. */
function moved(before: Scrape, after: Scrape): Record<string, number> {
  const a = seriesValues(before, "gatehouse_");
  const changes: Record<string, number> = {};
  for (const [key, now] of seriesValues(after, "gatehouse_")) {
    const was = a.get(key) ?? 0;
    if (now !== was) changes[key] = now - was;
  }
  return changes;
}

const GATEHOUSE_FAMILIES = [
  "gatehouse_node_sessions_open",
  "gatehouse_audit_queue_depth",
  "gatehouse_tls_handshakes_total",
  "gatehouse_tls_handshake_failures_total",
  "gatehouse_refusals_total",
  "gatehouse_registrations_total",
  "gatehouse_certificates_issued_total",
  "gatehouse_revocations_total",
  "gatehouse_token_verifications_total",
  "gatehouse_exec_duration_seconds",
  "gatehouse_audit_commit_duration_seconds",
  "gatehouse_audit_entries_total",
];

describe("GatewayMetrics", () => {
  it("renders text a Prometheus parser reads: every family named, typed and explained, with the process metrics", async () => {
    const s = await scrape(metricsWith());
    for (const name of GATEHOUSE_FAMILIES) {
      const f = family(s, name);
      expect(f.help, name).not.toBe("");
      // Prometheus naming: counters end in _total, durations are in seconds.
      if (f.type === "COUNTER") expect(name).toMatch(/_total$/);
      if (f.type === "HISTOGRAM") expect(name).toMatch(/_seconds$/);
    }
    expect(family(s, "gatehouse_node_sessions_open").type).toBe("GAUGE");
    expect(family(s, "gatehouse_exec_duration_seconds").type).toBe("HISTOGRAM");
    expect(value(s, "process_open_fds")).toBeGreaterThan(0);
    expect(family(s, "nodejs_eventloop_lag_seconds").type).toBe("GAUGE");
    // No series of the old name.
    expect(s.families.find((f) => f.name === "gatehouse_sessions")).toBeUndefined();
  });

  it("reads sessions open and the audit queue from their sources at each scrape", async () => {
    const sources = { liveSessions: 3, auditQueueDepth: 5 };
    const metrics = new GatewayMetrics({
      liveSessions: () => sources.liveSessions,
      auditQueueDepth: () => sources.auditQueueDepth,
    });
    let s = await scrape(metrics);
    expect(value(s, "gatehouse_node_sessions_open")).toBe(3);
    expect(value(s, "gatehouse_audit_queue_depth")).toBe(5);
    sources.liveSessions = 0;
    sources.auditQueueDepth = 12;
    s = await scrape(metrics);
    expect(value(s, "gatehouse_node_sessions_open")).toBe(0);
    expect(value(s, "gatehouse_audit_queue_depth")).toBe(12);
  });

  it("moves exactly one series per call, by the amount recorded", async () => {
    const metrics = metricsWith();
    const calls: [string, () => void, Record<string, number>][] = [
      [
        "tlsHandshake(false)",
        () => metrics.tlsHandshake(false),
        { 'gatehouse_tls_handshakes_total{"resumed":"false"}': 1 },
      ],
      [
        "tlsHandshake(true)",
        () => metrics.tlsHandshake(true),
        { 'gatehouse_tls_handshakes_total{"resumed":"true"}': 1 },
      ],
      [
        "tlsHandshakeFailed",
        () => metrics.tlsHandshakeFailed(),
        { "gatehouse_tls_handshake_failures_total{}": 1 },
      ],
      [
        "refused(invalid_token)",
        () => metrics.refused("invalid_token"),
        { 'gatehouse_refusals_total{"code":"invalid_token"}': 1 },
      ],
      [
        "registration(pending)",
        () => metrics.registration("pending"),
        { 'gatehouse_registrations_total{"outcome":"pending"}': 1 },
      ],
      [
        "registration(refused)",
        () => metrics.registration("refused"),
        { 'gatehouse_registrations_total{"outcome":"refused"}': 1 },
      ],
      [
        "certificateIssued(renewal)",
        () => metrics.certificateIssued("renewal"),
        { 'gatehouse_certificates_issued_total{"kind":"renewal"}': 1 },
      ],
      [
        "revoked(api_key)",
        () => metrics.revoked("api_key"),
        { 'gatehouse_revocations_total{"kind":"api_key"}': 1 },
      ],
      [
        "tokenVerified(cache_hit)",
        () => metrics.tokenVerified("cache_hit"),
        { 'gatehouse_token_verifications_total{"result":"cache_hit"}': 1 },
      ],
      [
        "execFinished(completed, 0.02)",
        () => metrics.execFinished("completed", 0.02),
        { 'gatehouse_exec_duration_seconds_count{"outcome":"completed"}': 1 },
      ],
      [
        "auditCommitted(7, 0.003)",
        () => metrics.auditCommitted(7, 0.003),
        { "gatehouse_audit_commit_duration_seconds_count{}": 1, "gatehouse_audit_entries_total{}": 7 },
      ],
    ];
    for (const [what, call, expected] of calls) {
      const before = await scrape(metrics);
      call();
      expect(moved(before, await scrape(metrics)), what).toEqual(expected);
    }
  });

  it("sorts latencies into buckets in seconds suited to each: exec 5 ms to 60 s, audit commits 0.5 ms to 1 s", async () => {
    const metrics = metricsWith();
    metrics.execFinished("completed", 0.004);
    metrics.execFinished("completed", 45);
    metrics.execFinished("timeout", 61);
    metrics.auditCommitted(1, 0.0004);
    metrics.auditCommitted(1, 0.8);
    const s = await scrape(metrics);
    const exec = "gatehouse_exec_duration_seconds";
    expect(bucket(s, exec, "0.005", { outcome: "completed" })).toBe(1);
    expect(bucket(s, exec, "30", { outcome: "completed" })).toBe(1);
    expect(bucket(s, exec, "60", { outcome: "completed" })).toBe(2);
    expect(bucket(s, exec, "60", { outcome: "timeout" })).toBe(0);
    expect(bucket(s, exec, "+Inf", { outcome: "timeout" })).toBe(1);
    const commit = "gatehouse_audit_commit_duration_seconds";
    expect(bucket(s, commit, "0.0005")).toBe(1);
    expect(bucket(s, commit, "0.5")).toBe(1);
    expect(bucket(s, commit, "1")).toBe(2);
    expect(value(s, "gatehouse_audit_entries_total")).toBe(2);
  });

  it("shows every fixed series from the start, at 0, and never grows a label set past its fixed values", async () => {
    const metrics = metricsWith();
    const first = await scrape(metrics);
    const codes = Object.keys(ERROR_CATALOGUE) as ErrorCode[];
    expect(labelSets(first, "gatehouse_refusals_total").map((l) => l.code)).toEqual(codes);
    for (const code of codes) expect(value(first, "gatehouse_refusals_total", { code }), code).toBe(0);
    expect(labelSets(first, "gatehouse_registrations_total").map((l) => l.outcome)).toEqual([
      "pending",
      "approved",
      "denied",
      "expired",
      "refused",
    ]);
    expect(labelSets(first, "gatehouse_certificates_issued_total").map((l) => l.kind)).toEqual([
      "initial",
      "renewal",
      "reissue",
    ]);
    expect(labelSets(first, "gatehouse_revocations_total").map((l) => l.kind)).toEqual([
      "device",
      "api_key",
      "enroll_token",
    ]);
    expect(labelSets(first, "gatehouse_token_verifications_total").map((l) => l.result)).toEqual([
      "cache_hit",
      "cache_miss",
      "refused",
    ]);
    expect(
      labelSets(first, "gatehouse_tls_handshakes_total")
        .map((l) => l.resumed)
        .sort(),
    ).toEqual(["false", "true"]);

    // A fleet's worth of events: the number of series stays where it was.
    const seriesBefore = seriesValues(first, "gatehouse_").size;
    for (let i = 0; i < 2000; i++) {
      metrics.refused(codes[i % codes.length]!);
      metrics.tlsHandshake(i % 2 === 0);
      metrics.tokenVerified(i % 3 === 0 ? "cache_miss" : "cache_hit");
      metrics.execFinished(i % 5 === 0 ? "timeout" : "completed", i / 1000);
      metrics.registration("pending");
    }
    const after = await scrape(metrics);
    expect(seriesValues(after, "gatehouse_").size).toBe(seriesBefore);
    expect(value(after, "gatehouse_refusals_total", { code: "invalid_token" })).toBeGreaterThan(0);
    expect(value(after, "gatehouse_registrations_total", { outcome: "pending" })).toBe(2000);
  });
});
