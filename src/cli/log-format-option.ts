/**
 * The `--log-format` option of the long-running commands (gateway start, node start), apart from
 * logger.ts so that defining the commands does not load pino (see lazyAction in run.ts).
 */
export const LOG_FORMAT_OPTION = [
  "--log-format <format>",
  "json or pretty (default: pretty on a terminal, json otherwise)",
] as const;
