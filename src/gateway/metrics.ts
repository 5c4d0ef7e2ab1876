/**
 * The gateway's one metrics registry (Prometheus text exposition, `gatehouse_` prefix), served by
 * GET /metrics. Other modules record through the small named methods here, never through prom-client
 * directly, so the hot path calls one function and grows no `if (metrics)` branches. Values that
 * another part already counts (live sessions) are read at scrape time instead of being recorded.
 */
import { Gauge, Registry, collectDefaultMetrics } from "prom-client";

/** What the registry reads when it is scraped. */
export interface MetricSources {
  /** Node sessions open right now. */
  liveSessions(): number;
}

export class GatewayMetrics {
  private readonly registry = new Registry();

  constructor(sources: MetricSources) {
    // process_* and nodejs_*: CPU, memory, open file descriptors, event-loop lag.
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: "gatehouse_sessions",
      help: "Node sessions open now.",
      registers: [this.registry],
      collect() {
        this.set(sources.liveSessions());
      },
    });
  }

  /** The Content-Type of {@link render}'s text (Prometheus text format 0.0.4). */
  get contentType(): string {
    return this.registry.contentType;
  }

  /** Every metric in the Prometheus text format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }
}
