// The typed JS side of the WASM boundary is generated from the AssemblyScript sources; this fails when the
// committed file no longer matches what the current kernels declare (run `npm run asbuild` to refresh it).
import { readFile } from "node:fs/promises";
import { describe, expect, it } from "vitest";
import { generateBindings, parseActivations, parseDeclarations } from "../scripts/kernel-bindings.mjs";
import { ACTIVATIONS } from "../src/backends/kernels.js";
import { KERNEL_PARAMS } from "../src/backends/wasm/exports.generated.js";
import { pack } from "../src/backends/wasm/runtime.js";

const read = (p: string) => readFile(new URL(p, import.meta.url), "utf8");

describe("JS↔WASM bindings", () => {
  it("src/backends/wasm/exports.generated.ts matches the current AssemblyScript declarations", async () => {
    const dts = await read("../build/kernels-simd.d.ts");
    expect(generateBindings(dts, await read("../assembly/common.ts"))).toBe(
      await read("../src/backends/wasm/exports.generated.ts"),
    );
  });

  it("the generator reads every export of assembly/index.ts and every ACT_* code", async () => {
    const fns = parseDeclarations(await read("../build/kernels-simd.d.ts"));
    const index = await read("../assembly/index.ts");
    for (const m of index.matchAll(/export \{([^}]*)\}/g)) {
      for (const name of m[1]
        .split(",")
        .map((s) => s.trim())
        .filter((s) => s !== "RELAXED"))
        expect(fns.map((f) => f.name)).toContain(name);
    }
    expect(Object.keys(parseActivations(await read("../assembly/common.ts")))).toEqual([...ACTIVATIONS]);
  });

  it("pack puts named arguments in the kernel's parameter order and rejects a missing one", () => {
    const args = { x: 1, bias: 2, res: 3, out: 4, batch: 5, C: 6, H: 7, W: 8, O: 9, up: true };
    expect(pack({ kernel: "winograd", args })).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 1]);
    expect(KERNEL_PARAMS.winograd.slice(0, 9)).toEqual(["x", "bias", "res", "out", "batch", "C", "H", "W", "O"]);
    expect(
      pack({
        kernel: "matmul",
        args: { a: 1, b: 2, out: 3, batch: 1, m: 2, n: 3, k: 4, transposeB: true, alpha: 0.5 },
      }),
    ).toEqual([1, 2, 3, 1, 2, 3, 4, 1, 0.5]);
    expect(() => pack({ kernel: "add", args: { a: 1, b: 2, out: 3 } as never })).toThrow(/missing argument length/);
  });
});
