import type { Activation, DeviceBuffer } from "../backends/kernels.js";
import { NS_PER_ELEMENT, NS_PER_TRANSCENDENTAL } from "../backends/wasm/runtime.js";
import { activationFn, defineKernel, ELEMENTWISE_HEAD, type KernelDef } from "../backends/webgpu/shaders.js";
import { activate } from "./activate.js";
import { activationCode, isCheapActivation } from "./contract.js";
import { defineOp } from "./op.js";

export interface ActivationArgs {
  x: DeviceBuffer;
  out: DeviceBuffer; // may alias x
  length: number;
  activation: Activation;
}

export interface AddArgs {
  a: DeviceBuffer;
  b: DeviceBuffer;
  out: DeviceBuffer; // may alias a or b
  length: number;
}

export interface ChannelAffineArgs {
  x: DeviceBuffer; // [batch, channels, spatial]
  scale: DeviceBuffer; // [batch, channels]
  shift: DeviceBuffer; // [batch, channels]
  out: DeviceBuffer; // activation(x * scale + shift); may alias x
  batch: number;
  channels: number;
  spatial: number;
  activation: Activation;
}

const cdiv = (a: number, b: number): number => Math.ceil(a / b);
const perElement = (a: ActivationArgs["activation"]): number =>
  isCheapActivation(a) ? NS_PER_ELEMENT : NS_PER_TRANSCENDENTAL;

/** out = a + b; out may alias a or b; length 0 does nothing. */
export const add = defineOp<AddArgs>({
  name: "add",
  validate(r, p) {
    r.nonNegative({ length: p.length });
    r.fits("a", p.a, p.length);
    r.fits("b", p.b, p.length);
    r.fits("out", p.out, p.length);
  },
  reference(rt, p) {
    const a = rt.data(p.a),
      b = rt.data(p.b),
      out = rt.data(p.out);
    for (let i = 0; i < p.length; i++) out[i] = a[i] + b[i];
  },
  wasm(rt, p) {
    if (p.length === 0) return;
    const args = { a: rt.ptr("a", p.a), b: rt.ptr("b", p.b), out: rt.ptr("out", p.out), length: p.length };
    return rt.run([{ kernel: "add", args }], p.length * NS_PER_ELEMENT);
  },
  webgpu(rt, p) {
    const a = rt.own("add", "a", p.a),
      b = rt.own("add", "b", p.b),
      out = rt.own("add", "out", p.out);
    rt.elementwise("add", p.length, [a.eb, b.eb, out.eb], (start, count) => {
      const r = { lo: start, hi: start + count };
      rt.run(
        addKernel(),
        [
          { buf: a, ...r },
          { buf: b, ...r },
          { buf: out, ...r },
        ],
        { start, count },
        cdiv(count, 256),
      );
    });
  },
  // in place: the backend roots every alias of a written buffer at its first binding
  warmup: () => [{ def: addKernel() }, { def: addKernel(), roots: [0, 1, 0] }, { def: addKernel(), roots: [0, 1, 1] }],
});

/** out = activation(x); out may alias x; length 0 does nothing. */
export const activation = defineOp<ActivationArgs>({
  name: "activation",
  validate(r, p) {
    r.nonNegative({ length: p.length });
    r.activation(p.activation);
    r.fits("x", p.x, p.length);
    r.fits("out", p.out, p.length);
  },
  reference(rt, p) {
    const x = rt.data(p.x),
      out = rt.data(p.out);
    for (let i = 0; i < p.length; i++) out[i] = activate(x[i], p.activation);
  },
  wasm(rt, p) {
    if (p.length === 0) return;
    const args = {
      x: rt.ptr("x", p.x),
      out: rt.ptr("out", p.out),
      length: p.length,
      act: activationCode(p.activation),
    };
    return rt.run([{ kernel: "activation", args }], p.length * perElement(p.activation));
  },
  webgpu(rt, p) {
    const x = rt.own("activation", "x", p.x),
      out = rt.own("activation", "out", p.out);
    const k = activationKernel(p.activation);
    rt.elementwise("activation", p.length, [x.eb, out.eb], (start, count) => {
      const r = { lo: start, hi: start + count };
      rt.run(
        k,
        [
          { buf: x, ...r },
          { buf: out, ...r },
        ],
        { start, count },
        cdiv(count, 256),
      );
    });
  },
  warmup: (acts) => acts.flatMap((a) => [{ def: activationKernel(a) }, { def: activationKernel(a), roots: [0, 0] }]),
});

/** out = activation(x * scale + shift) per (batch, channel): GroupNorm with known statistics; out may alias x. */
export const channelAffine = defineOp<ChannelAffineArgs>({
  name: "channelAffine",
  validate(r, p) {
    r.positive({ batch: p.batch, channels: p.channels, spatial: p.spatial });
    r.activation(p.activation);
    r.noAlias(p.out, { scale: p.scale, shift: p.shift });
    const planes = p.batch * p.channels;
    r.fits("x", p.x, planes * p.spatial);
    r.fits("scale", p.scale, planes);
    r.fits("shift", p.shift, planes);
    r.fits("out", p.out, planes * p.spatial);
  },
  reference(rt, p) {
    const x = rt.data(p.x),
      out = rt.data(p.out),
      scale = rt.data(p.scale),
      shift = rt.data(p.shift);
    for (let bc = 0; bc < p.batch * p.channels; bc++) {
      for (let s = 0; s < p.spatial; s++) {
        const i = bc * p.spatial + s;
        out[i] = activate(x[i] * scale[bc] + shift[bc], p.activation);
      }
    }
  },
  wasm(rt, p) {
    const planes = p.batch * p.channels;
    const args = {
      x: rt.ptr("x", p.x),
      scale: rt.ptr("scale", p.scale),
      shift: rt.ptr("shift", p.shift),
      out: rt.ptr("out", p.out),
      planes,
      spatial: p.spatial,
      act: activationCode(p.activation),
    };
    return rt.run([{ kernel: "channelAffine", args }], planes * p.spatial * perElement(p.activation));
  },
  webgpu(rt, p) {
    const op = "channelAffine";
    const planes = p.batch * p.channels,
      S = p.spatial;
    const k = channelAffineKernel(p.activation);
    const x = rt.own(op, "x", p.x),
      scale = rt.own(op, "scale", p.scale),
      shift = rt.own(op, "shift", p.shift);
    const out = rt.own(op, "out", p.out);
    rt.elementwise(
      op,
      planes * S,
      [x.eb, out.eb],
      (start, count) => {
        const r = { lo: start, hi: start + count };
        const pr = { lo: Math.floor(start / S), hi: Math.floor((start + count - 1) / S) + 1 };
        rt.run(
          k,
          [
            { buf: x, ...r },
            { buf: scale, ...pr },
            { buf: shift, ...pr },
            { buf: out, ...r },
          ],
          { start, count, spatial: S },
          cdiv(count, 256),
        );
      },
      [{ what: "scale/shift", size: (s) => cdiv(s[0], S) + 1, limit: rt.cap(scale.eb) }],
    );
  },
  warmup: (acts) =>
    acts.flatMap((a) => [{ def: channelAffineKernel(a) }, { def: channelAffineKernel(a), roots: [0, 1, 2, 0] }]),
});

// ---- WGSL ----------------------------------------------------------------------------------------

const addKernel = (): KernelDef =>
  defineKernel("add", () => ({
    bindings: [{ name: "a" }, { name: "b" }, { name: "out", write: true }],
    params: [
      ["start", "u32"],
      ["count", "u32"],
    ],
    body: ELEMENTWISE_HEAD + "  st_out(e, ld_a(e) + ld_b(e));\n}\n",
  }));

const activationKernel = (a: Activation): KernelDef =>
  defineKernel(`act_${a}`, () => ({
    bindings: [{ name: "x" }, { name: "out", write: true }],
    params: [
      ["start", "u32"],
      ["count", "u32"],
    ],
    body: activationFn(a) + ELEMENTWISE_HEAD + "  st_out(e, act(ld_x(e)));\n}\n",
  }));

/** Per-(batch, channel) scale and shift, then the activation: group norm with precomputed statistics. */
const channelAffineKernel = (a: Activation): KernelDef =>
  defineKernel(`affine_${a}`, () => ({
    bindings: [{ name: "x" }, { name: "scale" }, { name: "shift" }, { name: "out", write: true }],
    params: [
      ["start", "u32"],
      ["count", "u32"],
      ["spatial", "u32"],
    ],
    body:
      activationFn(a) +
      ELEMENTWISE_HEAD +
      `  let plane = e / P.spatial;
  st_out(e, act(ld_x(e) * ld_scale(plane) + ld_shift(plane)));
}
`,
  }));
