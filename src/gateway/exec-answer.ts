import { GatehouseError, type ErrorCode } from "../protocol/errors.js";
import type { ExecResult } from "../protocol/messages.js";
import { safeJson } from "../protocol/safe-text.js";

/** The most of a node's own text that the gateway repeats in an error description. */
export const MAX_NODE_TEXT_CHARS = 200;

/**
 * A node's free text, made safe to carry as data: cut to MAX_NODE_TEXT_CHARS characters and
 * quoted as a JSON string with every control, format or bidi character escaped (`safeJson`), so
 * that they arrive as visible `\u001b`-style escapes wherever the description is shown (terminal,
 * API client, page) and a reader can see where the node's words begin and end.
 */
export function quoteNodeText(text: string): string {
  const chars = [...text];
  const cut = chars.length > MAX_NODE_TEXT_CHARS;
  return safeJson(chars.slice(0, MAX_NODE_TEXT_CHARS).join("")) + (cut ? " (cut)" : "");
}

/** What the gateway makes of a node's answer: the code it records, and the error it replies with. */
export interface ExecVerdict {
  /** The catalogue code for history and audit; null for a command that ran to completion. */
  code: ErrorCode | null;
  /** Set when the operator gets an error instead of the command's output. */
  error?: GatehouseError;
}

/**
 * Turns a node's exec answer into the gateway's verdict. The gateway, not the node, picks every
 * code from the outcome alone: a node may refuse (always `command_not_allowed`, the only refusal a
 * node can express), report a timeout or a failure to start, or return output; its `code` field is
 * ignored and its `message` is quoted as data. A rogue node therefore cannot make an operator see
 * `device_revoked`, nor get the operator audited as refused.
 */
export function judgeExecAnswer(answer: ExecResult): ExecVerdict {
  const said = answer.message ? `: the node says ${quoteNodeText(answer.message)}` : "";
  switch (answer.outcome) {
    case "refused":
      return {
        code: "command_not_allowed",
        error: new GatehouseError("command_not_allowed", `the node refused the command${said}`),
      };
    case "timeout":
      return {
        code: "exec_timeout",
        error: new GatehouseError("exec_timeout", `the command did not finish in time on the node${said}`),
      };
    case "failed":
      return {
        code: "invalid_request",
        error: new GatehouseError(
          "invalid_request",
          `the node could not start the command${said}`,
          "Check the command's name and that it is installed on the node.",
        ),
      };
    case "truncated":
      return { code: "payload_too_large" };
    case "completed":
      return { code: null };
  }
}
