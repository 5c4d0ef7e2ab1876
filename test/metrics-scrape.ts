/**
 * Reads a /metrics scrape the way Prometheus would: the text is parsed by a real Prometheus text
 * format parser (parse-prometheus-text-format), never matched by regular expressions, so a scrape
 * that Prometheus could not read fails here.
 */
import parsePrometheusTextFormat from "parse-prometheus-text-format";

type Families = ReturnType<typeof parsePrometheusTextFormat>;
export type Family = Families[number];

export interface Scrape {
  /** Every family, typed, as the parser reads the whole text. */
  families: Families;
  /**
   * The same text read series by series: the parser folds a histogram's series into one and drops
   * their labels (it follows client_python 0.0.19), so here a histogram's `_bucket`, `_sum` and
   * `_count` lines are read as the plain labelled series they are in the text format.
   */
  series: Families;
}

/** Parses a scrape; throws (as Prometheus would refuse it) when the text is malformed. */
export function parseScrape(text: string): Scrape {
  const families = parsePrometheusTextFormat(text);
  const series = parsePrometheusTextFormat(
    text
      .split("\n")
      .filter((line) => !/^# TYPE \S+ histogram$/.test(line))
      .join("\n"),
  );
  return { families, series };
}

/** The family named `name`; throws when the scrape lacks it. */
export function family(scrape: Scrape, name: string): Family {
  const found = scrape.families.find((f) => f.name === name);
  if (!found) throw new Error(`the scrape has no ${name}`);
  return found;
}

function sameLabels(a: Record<string, string> | undefined, b: Record<string, string>): boolean {
  const left = a ?? {};
  const keys = Object.keys(left);
  return keys.length === Object.keys(b).length && keys.every((key) => left[key] === b[key]);
}

/**
 * The value of the series `name` with exactly these labels: a counter, a gauge, or a histogram's
 * `_count`, `_sum` or `_bucket` (with its `le`). Throws when the series is absent: every series of
 * a fixed label set is present from the start.
 */
export function value(scrape: Scrape, name: string, labels: Record<string, string> = {}): number {
  const sample = samplesOf(scrape, name).find((m) => sameLabels(m.labels, labels));
  if (sample?.value === undefined) throw new Error(`the scrape has no ${name}${JSON.stringify(labels)}`);
  return Number(sample.value);
}

/** The samples of the series `name`, gathered from every run of its lines. */
function samplesOf(scrape: Scrape, name: string): Family["metrics"] {
  return scrape.series.filter((f) => f.name === name).flatMap((f) => f.metrics);
}

/** The cumulative count of a histogram's bucket `le` (e.g. "0.005", "+Inf") for these labels. */
export function bucket(
  scrape: Scrape,
  name: string,
  le: string,
  labels: Record<string, string> = {},
): number {
  return value(scrape, `${name}_bucket`, { ...labels, le });
}

/** The label sets of a family's series. */
export function labelSets(scrape: Scrape, name: string): Record<string, string>[] {
  return samplesOf(scrape, name).map((m) => m.labels ?? {});
}

/**
 * Every series whose name starts with `prefix`, as "name{labels}" -> value. For a histogram
 * only its `_count` series, one per label set.
 */
export function seriesValues(scrape: Scrape, prefix: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const f of scrape.series) {
    if (!f.name.startsWith(prefix) || f.name.endsWith("_bucket") || f.name.endsWith("_sum")) continue;
    for (const m of f.metrics) values.set(`${f.name}${JSON.stringify(m.labels ?? {})}`, Number(m.value));
  }
  return values;
}
