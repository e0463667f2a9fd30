// Types of kernel-bindings.mjs (used by asbuild.mjs and test/kernel-bindings.test.ts).
export interface DeclaredFunction {
  name: string;
  params: { name: string; type: string }[];
  returns: string;
}
export function parseDeclarations(dts: string): DeclaredFunction[];
export function parseActivations(common: string): Record<string, number>;
export function generateBindings(dts: string, common: string): string;
