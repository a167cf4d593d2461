/**
 * Graph surgery for the delta hook (src/gpu-backend/graph) on two real exports run in onnxruntime-node:
 * the embedded default model (fp32, plain torch export: residual Adds) and the shared onnxruntime-genai
 * fixture (fp16, fused SkipSimplifiedLayerNormalization). A zero delta must leave the logits as they were
 * (bit for bit on fp32, within fp16 rounding on fp16); a random per-row delta must equal h + (h A) B + b
 * computed here from the unedited run's hidden state, and must change the logits.
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type * as ort from "onnxruntime-node";
import { Tensor } from "onnxruntime-node";
import { describe, expect, it } from "vitest";
import {
  describeResidualStream,
  GraphStructureError,
  insertDeltaHooks,
  type HookPlan,
} from "../../src/gpu-backend/graph/delta-hooks.js";
import { decodeModel, encodeModel } from "../../src/gpu-backend/graph/onnx-model.js";
import { readModelDir, type ModelInfo } from "../../src/gpu-backend/model/model-dir.js";
import {
  applyDelta,
  bitDifferences,
  deltaFeeds,
  firstCallFeeds,
  floatValues,
  maxAbs,
  maxAbsDiff,
  randomDelta,
  readBytes,
  seeded,
  sessionFromBytes,
  zeroDelta,
  type Delta,
} from "./helpers-delta.js";
import { syntheticDecoder } from "./helpers-synthetic.js";
import { FIXTURE_MODEL_DIR } from "../support/model-fixtures.js";

interface Case {
  label: string;
  dir: string;
  /** Whether the residual sums are plain Adds (fp32 torch export) or fused skip-norms (genai). */
  style: "add" | "skip-norm";
  /** The node each exporter names for "output of layer k": checks the structural search against names. */
  expectedNode: (k: number, numLayers: number) => RegExp;
}

const CASES: Case[] = [
  {
    label: "lens-tiny-chat (fp32, torch.onnx.export, residual Add)",
    dir: fileURLToPath(new URL("../../models/lens-tiny-chat", import.meta.url)),
    style: "add",
    // torch names the block's two residual adds /layers.k/Add and /layers.k/Add_1; the output is the second.
    expectedNode: (k) => new RegExp(`^/layers\\.${k}/Add_1$`),
  },
  {
    label: "tiny-random-llama-fp16-genai (fp16, fused SkipSimplifiedLayerNormalization)",
    dir: FIXTURE_MODEL_DIR,
    style: "skip-norm",
    // genai: the sum after layer k is formed by layer k+1's input norm, after the last layer by the final norm.
    expectedNode: (k, L) =>
      k < L - 1
        ? new RegExp(`^/model/layers\\.${k + 1}/input_layernorm/SkipLayerNorm$`)
        : new RegExp(`^/model/layers\\.${L}/final_norm_layernorm/SkipLayerNorm$`),
  },
];

/**
 * Tolerances. fp32: the hook's two MatMuls over hidden <= 160 and rank 4 round at about 1e-7 relative;
 * 1e-5 of the largest magnitude involved leaves room and is still far below the edits checked.
 * fp16: one fp16 ulp is 2^-10 relative; the hook rounds h A, (h A) B, + b, input + d and + skip, so allow
 * 8 ulps of the largest magnitude. Zero-delta logits on fp16: ORT's CPU provider rounds fp16 differently
 * once nodes are added (docs/design.md, "Measured facts"), so allow 4 ulps of the largest logit.
 */
const REL_TOL = { float32: 1e-5, float16: 8 * 2 ** -10 } as const;
const FP16_LOGIT_ULPS = 4 * 2 ** -10;
/** A real edit moves some logit by more than this fraction of the largest one (far above fp16 rounding). */
const LOGIT_CHANGE = 0.05;

function loadCase(c: Case): { info: ModelInfo; bytes: Uint8Array } | string {
  if (!existsSync(c.dir)) return `${c.dir} is absent`;
  let info: ModelInfo;
  try {
    info = readModelDir(c.dir);
  } catch (err) {
    return `cannot read the model directory: ${(err as Error).message}`;
  }
  if (!existsSync(info.onnxPath)) return `${info.onnxPath} is absent`;
  return { info, bytes: readBytes(info.onnxPath) };
}

for (const c of CASES) {
  const loaded = loadCase(c);
  if (typeof loaded === "string") {
    describe(c.label, () => {
      it.skip(`skipped: ${loaded}`, () => {});
    });
    continue;
  }
  const { info, bytes } = loaded;
  const L = info.numLayers;
  const H = info.hiddenSize;
  const dims = { numLayers: L, hiddenSize: H };
  const BATCH = 2;
  const SEQ = 5;
  const rand = seeded(0x5eed + L * 131 + H);
  const ids = Array.from({ length: BATCH }, () =>
    Array.from({ length: SEQ }, () => Math.floor(((rand() + 1) / 2) * Math.min(info.vocabSize, 256))),
  );

  async function run(plan: HookPlan, deltas: Map<number, Delta> = new Map()) {
    const g = insertDeltaHooks(bytes, plan, dims);
    const session = await sessionFromBytes(g.bytes, info.onnxPath, g.externalData);
    const feeds: Record<string, ort.Tensor> = firstCallFeeds(info, g.dtype, ids);
    for (const d of g.deltaInputs) {
      const delta = deltas.get(d.layer);
      if (!delta) throw new Error(`test gave no delta for layer ${d.layer}`);
      Object.assign(feeds, deltaFeeds(g.dtype, d, delta, BATCH, H));
    }
    const out = await session.run(feeds);
    await session.release();
    const hidden = new Map(g.hiddenOutputs.map((h) => [h.layer, out[h.name]!]));
    return { graph: g, logits: out[info.io.logits]!, hidden };
  }

  /** Compares logits with the unedited run: exact on fp32, within fp16 rounding on fp16. Returns the max diff. */
  function expectSameLogits(got: ort.Tensor, base: ort.Tensor, range?: [number, number]): number {
    const a = floatValues(got);
    const b = floatValues(base);
    const [from, to] = range ?? [0, a.length];
    const diff = maxAbsDiff(a, b, from, to);
    if (got.type === "float32") {
      const xa = (got.data as Float32Array).subarray(from, to);
      const xb = (base.data as Float32Array).subarray(from, to);
      expect(
        Buffer.compare(
          Buffer.from(xa.buffer, xa.byteOffset, xa.byteLength),
          Buffer.from(xb.buffer, xb.byteOffset, xb.byteLength),
        ),
      ).toBe(0);
    } else {
      expect(diff).toBeLessThanOrEqual(FP16_LOGIT_ULPS * maxAbs(b.subarray(from, to)));
    }
    return diff;
  }

  describe(c.label, () => {
    let baseLogits: ort.Tensor | undefined;
    async function base(): Promise<ort.Tensor> {
      if (!baseLogits) {
        const { dtype, externalData } = insertDeltaHooks(bytes, { deltaLayers: [] }, dims);
        const session = await sessionFromBytes(bytes, info.onnxPath, externalData);
        baseLogits = (await session.run(firstCallFeeds(info, dtype, ids)))[info.io.logits]!;
        await session.release();
      }
      return baseLogits;
    }

    it("finds the residual stream after every layer where the exporter's names put it", () => {
      const d = describeResidualStream(bytes, dims);
      expect(d.afterLayer).toHaveLength(L);
      d.afterLayer.forEach((s, k) => {
        expect(s.kind).toBe(c.style);
        expect(s.node).toMatch(c.expectedNode(k, L));
      });
    });

    it("leaves the bytes alone when the plan asks for nothing", () => {
      const g = insertDeltaHooks(bytes, { deltaLayers: [], exposeHidden: [] }, dims);
      expect(g.bytes).toBe(bytes);
      expect(g.deltaInputs).toEqual([]);
      expect(g.hiddenOutputs).toEqual([]);
      expect(g.dtype).toBe(c.style === "add" ? "float32" : "float16");
    });

    it("declares the delta inputs and hidden outputs in the residual dtype", async () => {
      const g = insertDeltaHooks(bytes, { deltaLayers: [L - 1, 0, 0], exposeHidden: [0] }, dims);
      expect(g.deltaInputs.map((d) => d.layer)).toEqual(L > 1 ? [0, L - 1] : [0]);
      const session = await sessionFromBytes(g.bytes, info.onnxPath, g.externalData);
      for (const d of g.deltaInputs) for (const n of [d.a, d.b, d.bias]) expect(session.inputNames).toContain(n);
      expect(session.outputNames).toContain(g.hiddenOutputs[0]!.name);
      await session.release();
    });

    it(`an all-zero delta at several layers gives the unedited logits (${c.style === "add" ? "bit for bit" : "within 4 fp16 ulps"})`, async () => {
      const layers = [...new Set([0, Math.floor(L / 2), L - 1])];
      const zeros = new Map(layers.map((k) => [k, zeroDelta(BATCH, H, 4)]));
      const edited = await run({ deltaLayers: layers }, zeros);
      const diff = expectSameLogits(edited.logits, await base());
      const allowed = edited.logits.type === "float32" ? 0 : FP16_LOGIT_ULPS * maxAbs(floatValues(await base()));
      console.info(
        `[${c.label}] zero delta at layers ${layers.join(",")}: max |logit diff| ${diff.toExponential(2)} (allowed ${allowed.toExponential(2)}), values differing ${bitDifferences(edited.logits, await base())}/${edited.logits.data.length}`,
      );
    });

    // A middle layer and the last one (on the fixture: a fused node with an explicit sum output, then the
    // final norm whose sum is only implicit).
    const hookLayers = [...new Set([Math.floor((L - 1) / 2), L - 1])];
    for (const k of hookLayers) {
      it(`a random per-row delta at layer ${k} equals h + (h A) B + b on the exposed hidden state and changes the logits`, async () => {
        // Unedited hidden state at layer k (exposing it must not change the logits either).
        const plain = await run({ deltaLayers: [], exposeHidden: [k] });
        expectSameLogits(plain.logits, await base());
        const h = floatValues(plain.hidden.get(k)!);
        expect(plain.hidden.get(k)!.dims).toEqual([BATCH, SEQ, H]);

        const delta = randomDelta(seeded(k + 17), BATCH, H, 4, maxAbs(h), plain.graph.dtype);
        const edited = await run({ deltaLayers: [k], exposeHidden: [k] }, new Map([[k, delta]]));
        const got = floatValues(edited.hidden.get(k)!);
        const want = applyDelta(h, delta, BATCH, SEQ, H);
        const tol = REL_TOL[plain.graph.dtype] * Math.max(maxAbs(want), maxAbs(h));
        const err = maxAbsDiff(got, want);
        expect(err).toBeLessThanOrEqual(tol);

        // The check has teeth: the edit is far above the tolerance, and each row has its own delta
        // (swapping the rows' deltas does not match).
        const size = maxAbsDiff(want, h);
        expect(size).toBeGreaterThan(20 * tol);
        const swapped: Delta = {
          rank: delta.rank,
          a: Float64Array.from([...delta.a.subarray(H * 4), ...delta.a.subarray(0, H * 4)]),
          b: Float64Array.from([...delta.b.subarray(H * 4), ...delta.b.subarray(0, H * 4)]),
          bias: Float64Array.from([...delta.bias.subarray(H), ...delta.bias.subarray(0, H)]),
        };
        expect(maxAbsDiff(got, applyDelta(h, swapped, BATCH, SEQ, H))).toBeGreaterThan(20 * tol);

        const logitDiff = maxAbsDiff(floatValues(edited.logits), floatValues(await base()));
        expect(logitDiff).toBeGreaterThan(LOGIT_CHANGE * maxAbs(floatValues(await base())));
        console.info(
          `[${c.label}] delta at layer ${k}: |h' - reference| ${err.toExponential(2)} (tol ${tol.toExponential(2)}), edit size ${size.toExponential(2)}, max |logit change| ${logitDiff.toExponential(2)}`,
        );
      });
    }

    it("the hook after the last layer sits right before the final norm: doubling the stream there keeps the logits", async () => {
      // h' = 2h via A = I, B = I, b = 0. The final RMSNorm is scale-invariant (up to its eps), so the logits
      // barely move if, and only if, nothing but that norm follows the hook. The same edit after an earlier
      // layer changes the logits, since later layers add branches that are not doubled. Checked without
      // relying on node names.
      const double: Delta = {
        rank: H,
        a: new Float64Array(BATCH * H * H),
        b: new Float64Array(BATCH * H * H),
        bias: new Float64Array(BATCH * H),
      };
      for (let r = 0; r < BATCH; r++)
        for (let i = 0; i < H; i++) {
          double.a[(r * H + i) * H + i] = 1;
          double.b[(r * H + i) * H + i] = 1;
        }
      const b = floatValues(await base());
      const scale = maxAbs(b);
      const last = await run({ deltaLayers: [L - 1] }, new Map([[L - 1, double]]));
      const lastDiff = maxAbsDiff(floatValues(last.logits), b);
      expect(lastDiff).toBeLessThanOrEqual((last.graph.dtype === "float32" ? 1e-3 : 1e-2) * scale);
      const earlier = Math.max(0, L - 2);
      const mid = await run({ deltaLayers: [earlier] }, new Map([[earlier, double]]));
      const midDiff = maxAbsDiff(floatValues(mid.logits), b);
      expect(midDiff).toBeGreaterThan(LOGIT_CHANGE * scale);
      console.info(
        `[${c.label}] doubling the stream: after layer ${L - 1} max |logit diff| ${lastDiff.toExponential(2)}, after layer ${earlier} ${midDiff.toExponential(2)} (max |logit| ${scale.toExponential(2)})`,
      );
    });

    it("a row without a delta (zeros) keeps its logits while the other row's change", async () => {
      const k = Math.min(1, L - 1);
      const plain = await run({ deltaLayers: [], exposeHidden: [k] });
      const delta = randomDelta(
        seeded(99),
        BATCH,
        H,
        2,
        0.5 * maxAbs(floatValues(plain.hidden.get(k)!)),
        plain.graph.dtype,
      );
      // Row 1 gets zeros: the backend's encoding of "no delta for this row".
      delta.a.fill(0, H * 2);
      delta.b.fill(0, H * 2);
      delta.bias.fill(0, H);
      const edited = await run({ deltaLayers: [k] }, new Map([[k, delta]]));
      const perRow = edited.logits.data.length / BATCH;
      const b = await base();
      const diffRow1 = expectSameLogits(edited.logits, b, [perRow, 2 * perRow]);
      const diffRow0 = maxAbsDiff(floatValues(edited.logits), floatValues(b), 0, perRow);
      expect(diffRow0).toBeGreaterThan(Math.max(10 * diffRow1, LOGIT_CHANGE * maxAbs(floatValues(b))));
      console.info(
        `[${c.label}] mixed batch, delta on row 0 only: row 1 max |logit diff| ${diffRow1.toExponential(2)}, row 0 ${diffRow0.toExponential(2)}`,
      );
    });

    it("refuses a structure it does not recognise instead of hooking a wrong tensor", () => {
      expect(() => insertDeltaHooks(bytes, { deltaLayers: [0] }, { numLayers: L + 1, hiddenSize: H })).toThrow(
        GraphStructureError,
      );
      expect(() => insertDeltaHooks(bytes, { deltaLayers: [0] }, { numLayers: L, hiddenSize: H + 1 })).toThrow(
        /hidden_size/,
      );
      expect(() => insertDeltaHooks(bytes, { deltaLayers: [L] }, dims)).toThrow(RangeError);

      const names = describeResidualStream(bytes, dims).afterLayer.map((s) => s.node);
      // A residual sum that is no longer a sum: the chain breaks and the layer count no longer fits.
      const broken = decodeModel(bytes);
      const target = broken.graph!.node!.find((n) => n.name === names[0])!;
      target.opType = target.opType === "Add" ? "Sub" : "SimplifiedLayerNormalization";
      expect(() => insertDeltaHooks(encodeModel(broken), { deltaLayers: [0] }, dims)).toThrow(GraphStructureError);

      // Node names that place the sums in other layers than the chain does.
      const renamed = decodeModel(bytes);
      renamed.graph!.node!.find((n) => n.name === names[0])!.name = `/model/layers.${L + 3}/Add_1`;
      expect(() => insertDeltaHooks(encodeModel(renamed), { deltaLayers: [0] }, dims)).toThrow(/names disagree/);
    });
  });
}

describe("synthetic export styles (fp32): fused SkipLayerNormalization with bias, parallel blocks", () => {
  const BATCH = 2;
  const SEQ = 4;
  for (const style of ["skip-layer-norm", "parallel-add"] as const) {
    const m = syntheticDecoder(style, 3, 8, 32, style === "skip-layer-norm" ? 11 : 12);
    const dims = { numLayers: m.numLayers, hiddenSize: m.hiddenSize };
    const ids = new Tensor(
      "int64",
      BigInt64Array.from({ length: BATCH * SEQ }, (_, i) => BigInt((i * 7 + 3) % m.vocab)),
      [BATCH, SEQ],
    );

    async function run(plan: HookPlan, deltas: Map<number, Delta> = new Map()) {
      const g = insertDeltaHooks(m.bytes, plan, dims);
      const session = await sessionFromBytes(g.bytes, "model.onnx", g.externalData);
      const feeds: Record<string, ort.Tensor> = { input_ids: ids };
      for (const d of g.deltaInputs)
        Object.assign(feeds, deltaFeeds(g.dtype, d, deltas.get(d.layer)!, BATCH, m.hiddenSize));
      const out = await session.run(feeds);
      await session.release();
      return { logits: out.logits!, hidden: new Map(g.hiddenOutputs.map((h) => [h.layer, floatValues(out[h.name]!)])) };
    }

    it(`${style}: hooks the sum after each layer, by structure alone`, () => {
      const d = describeResidualStream(m.bytes, dims);
      expect(d.sumsPerLayer).toBe(style === "skip-layer-norm" ? 2 : 1);
      expect(d.afterLayer.map((s) => s.node)).toEqual(Array.from({ length: m.numLayers }, (_, k) => m.sumNode(k)));
    });

    it(`${style}: zero delta keeps the logits bit for bit; a random delta is h + (h A) B + b at every hooked layer`, async () => {
      const all = Array.from({ length: m.numLayers }, (_, k) => k);
      const base = await run({ deltaLayers: [] });
      const zero = await run({ deltaLayers: all }, new Map(all.map((k) => [k, zeroDelta(BATCH, m.hiddenSize, 3)])));
      expect(bitDifferences(zero.logits, base.logits)).toBe(0);
      // Exposing the stream must not change the logits either (it could, by blocking a fusion).
      const plain = await run({ deltaLayers: [], exposeHidden: all });
      expect(bitDifferences(plain.logits, base.logits)).toBe(0);

      // Only layer 1 edited: layers before it are untouched, layer 1 matches the reference.
      const h1 = plain.hidden.get(1)!;
      const delta = randomDelta(seeded(5), BATCH, m.hiddenSize, 3, maxAbs(h1), "float32");
      const edited = await run({ deltaLayers: [1], exposeHidden: all }, new Map([[1, delta]]));
      expect(maxAbsDiff(edited.hidden.get(0)!, plain.hidden.get(0)!)).toBe(0);
      const want = applyDelta(h1, delta, BATCH, SEQ, m.hiddenSize);
      const err = maxAbsDiff(edited.hidden.get(1)!, want);
      expect(err).toBeLessThanOrEqual(REL_TOL.float32 * maxAbs(want));
      expect(maxAbsDiff(want, h1)).toBeGreaterThan(20 * REL_TOL.float32 * maxAbs(want));
      expect(maxAbsDiff(floatValues(edited.logits), floatValues(plain.logits))).toBeGreaterThan(
        LOGIT_CHANGE * maxAbs(floatValues(plain.logits)),
      );
      console.info(
        `[synthetic ${style}] zero delta: logits bit-identical; delta at layer 1: |h' - reference| ${err.toExponential(2)}`,
      );
    });
  }
});
