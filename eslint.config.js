import js from "@eslint/js";
import tseslint from "typescript-eslint";

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
      ],
    },
  },
);
