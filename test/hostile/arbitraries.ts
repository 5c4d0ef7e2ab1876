/**
 * Generators of hostile input: junk text, junk JSON, bodies shaped like a route's own, mutated
 * encodings. Every generator is pure fast-check, so a seed replays a run exactly.
 */
import fc from "fast-check";

/** Characters that look like nothing, or like something else: invisible, bidi, control, combining. */
export const TRICKY_CHARS = [
  "\u0000",
  "\u0007",
  "\u001b",
  "\u001b[2J",
  "\u001b]0;pwned\u0007",
  "\u007f",
  "\u0085",
  "\u009b",
  "\u00a0",
  "\u00ad",
  "\u034f",
  "\u115f",
  "\u1160",
  "\u180e",
  "\u2000",
  "\u200b",
  "\u200c",
  "\u200d",
  "\u200e",
  "\u2028",
  "\u2029",
  "\u202e",
  "\u2060",
  "\u2066",
  "\u2800",
  "\u3000",
  "\u3164",
  "\ufe0f",
  "\ufeff",
  "\uffa0",
  "\ufffd",
  "\ud800",
  "\udfff",
  "\u{e0001}",
  "\u0301",
  "\r\n",
  "\t",
  " ",
  "%",
  "%00",
  "%zz",
  "../",
  "\\",
  '"',
  "'",
  "<script>",
  "${jndi:x}",
];

/** Strings with a high share of tricky characters, and plain unicode strings. */
export const junkString = (maxLength = 80): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength, unit: "binary" }),
    fc.string({ maxLength, unit: "grapheme" }),
    fc
      .array(fc.oneof(fc.constantFrom(...TRICKY_CHARS), fc.string({ maxLength: 4 })), { maxLength: 16 })
      .map((parts) => parts.join("").slice(0, Math.max(maxLength, 1))),
  );

/** A long string: near and past the lengths the schemas allow. */
export const longString = fc.oneof(
  fc.integer({ min: 60, max: 300 }).map((n) => "a".repeat(n)),
  fc.integer({ min: 1000, max: 70_000 }).map((n) => "x".repeat(n)),
  fc.constantFrom(...TRICKY_CHARS).chain((c) => fc.integer({ min: 50, max: 5000 }).map((n) => c.repeat(n))),
);

/** Any value a JSON field could hold, weighted towards the awkward ones. */
export const junkValue: fc.Arbitrary<unknown> = fc.oneof(
  junkString(),
  longString,
  fc.integer(),
  fc.double(),
  fc.constantFrom(0, -1, 1e308, -0, 2 ** 53 + 1, true, false, null, "", " ", "1h", "0s", "-1d", "99999d"),
  fc.jsonValue({ maxDepth: 3 }),
);

/**
 * A body shaped like a route's own: some of its fields with junk values, sometimes an unknown or
 * prototype-polluting field, sometimes valid-looking values from `good`.
 */
export function bodyFor(fields: string[], good: Record<string, fc.Arbitrary<unknown>> = {}) {
  const field = (name: string) =>
    good[name]
      ? fc.oneof({ weight: 1, arbitrary: good[name] }, { weight: 2, arbitrary: junkValue })
      : junkValue;
  const known = fc.record(Object.fromEntries(fields.map((name) => [name, field(name)])), {
    requiredKeys: [],
  });
  const extra = fc.dictionary(
    fc.oneof(fc.constantFrom("__proto__", "constructor", "prototype", "toString", ""), junkString(12)),
    junkValue,
    { maxKeys: 2 },
  );
  return fc.oneof(
    { weight: 4, arbitrary: known.map((o) => JSON.stringify(o)) },
    {
      weight: 1,
      arbitrary: fc.tuple(known, extra).map(([a, b]) => JSON.stringify({ ...a, ...b })),
    },
    { weight: 1, arbitrary: junkJsonText },
  );
}

/** Text that is not JSON, or JSON of the wrong shape, or JSON that parsers trip on. */
export const junkJsonText: fc.Arbitrary<string> = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }).map((v) => JSON.stringify(v) ?? "null"),
  fc.string({ maxLength: 200 }),
  fc.constantFrom(
    "",
    "{",
    "}",
    "[",
    "null",
    "true",
    "0",
    '"x"',
    "{}{}",
    '{"a":1,"a":2}',
    '{"__proto__":{"admin":true}}',
    '{"constructor":{"prototype":{"admin":true}}}',
    '{"csr":"\\ud800"}',
    '{"name":"\\udfff\\ud800"}',
    "\ufeff{}",
    '{"a":1e999999}',
    "[".repeat(5000) + "]".repeat(5000),
    '{"a":' + "[".repeat(3000) + "]".repeat(3000) + "}",
  ),
);

/** Flips, drops, inserts or truncates bytes of a buffer: at least one byte differs. */
export function mutateBytes(original: Uint8Array): fc.Arbitrary<Buffer> {
  const length = original.length;
  return fc.oneof(
    fc
      .array(fc.tuple(fc.nat({ max: length - 1 }), fc.integer({ min: 1, max: 255 })), {
        minLength: 1,
        maxLength: 4,
      })
      .map((flips) => {
        const copy = Buffer.from(original);
        for (const [at, xor] of flips) copy[at] = copy[at]! ^ xor;
        return copy;
      }),
    fc.nat({ max: length - 1 }).map((n) => Buffer.from(original.subarray(0, n))),
    fc
      .tuple(fc.nat({ max: length }), fc.uint8Array({ minLength: 1, maxLength: 40 }))
      .map(([at, bytes]) =>
        Buffer.concat([original.subarray(0, at), Buffer.from(bytes), original.subarray(at)]),
      ),
    fc
      .tuple(fc.nat({ max: length - 1 }), fc.integer({ min: 1, max: 16 }))
      .map(([at, n]) => Buffer.concat([original.subarray(0, at), original.subarray(at + n)])),
  );
}

/** PEM armour of any label around any bytes. */
export function pem(label: string, der: Uint8Array): string {
  const lines =
    Buffer.from(der)
      .toString("base64")
      .match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}

/** Characters Node's HTTP client lets through in a header value (tab, visible ASCII, latin-1). */
export const headerSafeString = (maxLength = 120): fc.Arbitrary<string> =>
  fc.oneof(
    fc.string({ maxLength, unit: fc.integer({ min: 0x20, max: 0x7e }).map((c) => String.fromCharCode(c)) }),
    fc.string({
      maxLength,
      unit: fc
        .oneof(fc.integer({ min: 0x20, max: 0x7e }), fc.integer({ min: 0x80, max: 0xff }), fc.constant(9))
        .map((c) => String.fromCharCode(c)),
    }),
  );
