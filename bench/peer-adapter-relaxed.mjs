// bench/peer-adapter.mjs on the relaxed-SIMD build (turns on --experimental-wasm-relaxed-simd at run time),
// as a separately named peer so that both builds can be timed in one ../shared/peers run:
//   EXTRA_PEERS=mod:$PWD/bench/peer-adapter.mjs,mod:$PWD/bench/peer-adapter-relaxed.mjs ../shared/peers/run.sh
import { create as createAdapter } from "./peer-adapter.mjs";

export async function create(options) {
  process.env.AUTOENCODERKL_RELAXED = "1";
  return createAdapter(options);
}
