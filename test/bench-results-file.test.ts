/**
 * Where `bench/run.ts` writes its figures: a whole run (no names) writes latest.json, the file
 * the repository keeps; a run of named benchmarks writes NAME.json per benchmark and leaves
 * latest.json alone, so trying one benchmark never overwrites the whole run's figures. The real
 * runner in a child process (tsx), on the cheapest benchmark with the shortest settings, writing
 * into a temporary folder (BENCH_RESULTS_DIR).
 */
import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { afterAll, describe, expect, it } from "vitest";

const run = promisify(execFile);
const root = path.resolve(import.meta.dirname, "..");
const dir = mkdtempSync(path.join(os.tmpdir(), "gh-bench-results-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("a run of one named benchmark", () => {
  it("writes NAME.json and leaves latest.json alone", async () => {
    await run(process.execPath, ["--import", "tsx", "bench/run.ts", "token-verify"], {
      cwd: root,
      env: {
        ...process.env,
        BENCH_RESULTS_DIR: dir,
        BENCH_DURATION_MS: "100",
        BENCH_REPS: "1",
        BENCH_WARMUP_MS: "0",
        BENCH_RUNIN_MS: "0",
        BENCH_CLIENT: "inline",
      },
      timeout: 180_000,
    });
    expect(readdirSync(dir)).toEqual(["token-verify.json"]);
    const written = JSON.parse(readFileSync(path.join(dir, "token-verify.json"), "utf8")) as {
      benchmarks: string[];
      results: { name: string }[];
    };
    expect(written.benchmarks).toEqual(["token-verify"]);
    expect(written.results.map((r) => r.name)).toEqual(["token-verify"]);
    expect(existsSync(path.join(dir, "latest.json"))).toBe(false);
  }, 200_000);

  it("is not committed: git ignores NAME.json and keeps latest.json", async () => {
    const ignored = async (file: string) =>
      run("git", ["check-ignore", "-q", file], { cwd: root }).then(
        () => true,
        () => false,
      );
    expect(await ignored("bench/results/token-verify.json")).toBe(true);
    expect(await ignored("bench/results/latest.json")).toBe(false);
  });
});
