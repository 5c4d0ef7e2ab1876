import js from "@eslint/js";
import tseslint from "typescript-eslint";

/**
 * setTimeout and setInterval hold at most 2^31-1 ms (24.8 days); a longer delay fires at once. A
 * delay that is not a literal or a named constant may come from a configured or credential-derived
 * duration: such timers go through setLongTimeout in src/protocol/long-timer.ts.
 */
const LONG_DELAY = {
  selector:
    "CallExpression[callee.name=/^set(Timeout|Interval)$/][arguments.length>1]:not([arguments.1.type='Literal']):not([arguments.1.name=/^[A-Z][A-Z0-9_]*$/])",
  message:
    "A delay that is not a literal or a constant may pass 2^31-1 ms: use setLongTimeout (src/protocol/long-timer.ts).",
};

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-console": "off",
    },
  },
  {
    // Timers whose delay may pass 2^31-1 ms (see LONG_DELAY).
    files: ["src/**/*.ts"],
    ignores: ["src/protocol/long-timer.ts"],
    rules: {
      "no-restricted-syntax": ["error", LONG_DELAY],
    },
  },
  {
    // The caller's address has one authority, src/gateway/caller-address.ts: behind a balancer
    // speaking the PROXY protocol the socket's peer is the balancer, not the caller.
    files: ["src/gateway/**/*.ts"],
    ignores: ["src/gateway/caller-address.ts", "src/gateway/proxy-listener.ts"],
    rules: {
      "no-restricted-syntax": [
        "error",
        {
          selector: "MemberExpression[property.name=/^(ip|ips|remoteAddress)$/]",
          message: "Read the caller's address with callerAddress (src/gateway/caller-address.ts).",
        },
        // This block replaces the rule's options for src/gateway: keep the timer check too.
        LONG_DELAY,
      ],
    },
  },
  {
    // `gatehouse --help`, `--version` and a wrong flag load only the command definitions: these
    // files import commander and a few small modules, and a command's implementation is loaded
    // with import() when it runs (lazyAction in src/cli/run.ts). test/cli-lazy.test.ts checks it.
    files: ["src/cli/main.ts", "src/cli/*-commands.ts"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              // Anything but commander and these small modules: output.ts, run.ts and the rest are
              // checked to import nothing heavy by test/cli-lazy.test.ts.
              regex:
                "^(?!(commander|\\./(run|output|target-options|log-format-option|[a-z-]+-commands)\\.js|\\.\\./protocol/version\\.js)$)",
              message:
                "Command definitions stay cheap: load what a command does with lazyAction(() => import(...)) (src/cli/run.ts).",
            },
          ],
        },
      ],
    },
  },
  {
    // Everything the CLI prints goes through src/cli/output.ts, which filters what a terminal
    // would act on: text from nodes and registrations must never reach it raw.
    files: ["src/cli/**/*.ts"],
    ignores: ["src/cli/output.ts"],
    rules: {
      "no-restricted-syntax": [
        "error",
        {
          selector:
            "MemberExpression[object.object.name='process'][object.property.name=/^std(out|err)$/][property.name='write']",
          message: "Print through printText/printNotice/printJson in src/cli/output.ts.",
        },
        {
          selector: "MemberExpression[object.name='console']",
          message: "Print through printText/printNotice/printJson in src/cli/output.ts.",
        },
        // This block replaces the rule's options for src/cli: keep the timer check too.
        LONG_DELAY,
      ],
    },
  },
  {
    // The dashboard runs in a browser. Values from nodes and registrations reach it, so it renders
    // text only: no HTML strings into the DOM.
    files: ["web/src/**/*.{ts,tsx}"],
    languageOptions: {
      globals: Object.fromEntries(
        [
          "window",
          "document",
          "location",
          "navigator",
          "fetch",
          "EventSource",
          "MessageEvent",
          "URLSearchParams",
          "Response",
          "setTimeout",
          "clearTimeout",
          "setInterval",
          "clearInterval",
        ].map((name) => [name, "readonly"]),
      ),
    },
    rules: {
      "no-restricted-syntax": [
        "error",
        {
          selector: "JSXAttribute[name.name='dangerouslySetInnerHTML']",
          message: "Render values as text: no dangerouslySetInnerHTML.",
        },
        {
          selector: "MemberExpression[property.name=/^(innerHTML|outerHTML|insertAdjacentHTML)$/]",
          message: "Render values as text: no HTML strings into the DOM.",
        },
        {
          selector: "MemberExpression[object.name='document'][property.name=/^write(ln)?$/]",
          message: "Render values as text: no document.write.",
        },
      ],
    },
  },
  {
    // The dashboard's build script runs in Node.
    files: ["web/*.mjs"],
    languageOptions: { globals: { process: "readonly", console: "readonly" } },
  },
);
