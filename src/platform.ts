/** Runtime detection shared by the loaders (no Node types needed: `process` is read off globalThis). */
export function isNode(): boolean {
  const p = (globalThis as { process?: { versions?: { node?: string } } }).process;
  return typeof p?.versions?.node === "string";
}
