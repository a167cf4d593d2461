/**
 * Finds "the residual stream after decoder layer k" in a decoder-only ONNX export.
 *
 * How: by the chain structure, not by node names, because names differ per exporter and are optional.
 * A pre-norm decoder is a chain of residual sums. Starting at the token embedding (the Gather that reads
 * an initializer with the input ids), the residual tensor r is read by a norm (several nodes) and by exactly
 * one "sum point" whose other operand is computed from r (the attention or MLP branch):
 *   - plain exports (torch.onnx.export of a Llama-style model): an `Add(r, branch)`; its output is the
 *     next residual tensor;
 *   - fused exports (onnxruntime-genai model builder, optimum + ORT transformers optimizer): a
 *     `SkipSimplifiedLayerNormalization` / `SkipLayerNormalization` with r as `input` or `skip`; the next
 *     residual tensor is its 4th output `input_skip_bias_sum` when present. The last fused node (the
 *     model's final norm) usually has no such output: the sum there is only implicit, and the chain ends.
 * A Cast or a Mul by a constant straight after the embedding (fp16 models, Gemma's sqrt(d) scale) is
 * followed through.
 *
 * A Llama-style block has two sum points (after attention, after the MLP), so with L layers the chain has
 * 2L sum points and the output of layer k is sum point 2k+1; a parallel block (attention and MLP summed
 * together, one residual add) gives L sum points and the output of layer k is sum point k.
 *
 * Checks, each a hard error rather than a guess: exactly one embedding; at every step at most one sum
 * point; the chain length is 2L or L; after the last sum point only the final norm and the LM head (at
 * most one projection) stand between it and the logits, which catches a chain that stopped early; when
 * node names carry layer numbers ("layers.N"), they agree with the chain either per block (torch: both
 * adds of layer k sit in layers.k) or per following norm (genai: the sum after layer k is computed by
 * layers.{k+1}'s input norm, and the last by the final norm named layers.L); the residual dtype is
 * float32 or float16.
 */
import {
  DataType,
  dependsOn,
  intAttr,
  isConstant,
  nodesBetween,
  type GraphIndex,
  type NodeProto,
} from "./onnx-model.js";

const SKIP_NORM_OPS = new Set(["SkipSimplifiedLayerNormalization", "SkipLayerNormalization"]);

/** Ops that project the hidden state (weights): between the last residual sum and the logits only the LM head may be one. */
const PROJECTION_OPS = new Set([
  "MatMul",
  "Gemm",
  "MatMulNBits",
  "MatMulInteger",
  "QLinearMatMul",
  "FusedMatMul",
  "DynamicQuantizeMatMul",
  "MatMulIntegerToFloat",
  "Attention",
  "MultiHeadAttention",
  "GroupQueryAttention",
  "Conv",
]);

export type SumPoint =
  | {
      kind: "add";
      node: NodeProto;
      /** The residual tensor this Add produces. */
      output: string;
    }
  | {
      kind: "skip-norm";
      node: NodeProto;
      /** The `input_skip_bias_sum` output (index 3), or null when the sum is only implicit. */
      sumOutput: string | null;
    };

export interface ResidualStream {
  dtype: "float32" | "float16";
  /** ONNX elem type of the residual stream (1 float32, 10 float16). */
  elemType: number;
  embedding: NodeProto;
  /** Every residual sum, in order. */
  sums: SumPoint[];
  /** afterLayer[k]: the sum point whose result is the output of decoder layer k. */
  afterLayer: SumPoint[];
  /** Number of sum points per decoder layer (2 for Llama-style blocks, 1 for parallel blocks). */
  sumsPerLayer: 1 | 2;
}

export class GraphStructureError extends Error {
  override name = "GraphStructureError";
}

function nodeLabel(n: NodeProto): string {
  return `${n.opType} node ${JSON.stringify(n.name ?? "")}`;
}

function findEmbedding(ix: GraphIndex, idsInput: string): NodeProto {
  const gathers = (ix.consumers.get(idsInput) ?? []).filter(
    (n) =>
      (n.opType === "Gather" || n.opType === "GatherBlockQuantized") &&
      n.input?.[1] === idsInput &&
      isConstant(ix, n.input?.[0] ?? ""),
  );
  if (gathers.length !== 1) {
    throw new GraphStructureError(
      `expected one embedding Gather reading ${idsInput} from a weight, found ${gathers.length}`,
    );
  }
  return gathers[0]!;
}

/** Elem type of a tensor when the graph says it (initializer, value_info, Cast target). */
function declaredElemType(ix: GraphIndex, name: string): number | null {
  const init = ix.initializers.get(name);
  if (init?.dataType) return init.dataType;
  for (const v of [...(ix.graph.valueInfo ?? []), ...(ix.graph.output ?? [])]) {
    if (v.name === name && v.type?.tensorType?.elemType) return v.type.tensorType.elemType;
  }
  return null;
}

/** The consumer of r that continues the residual chain, or null where the chain ends. */
function nextSum(ix: GraphIndex, r: string): NodeProto | null {
  // The branch reads r itself (plain adds) or, after a fused skip-norm, that node's normalised output:
  // a sibling output of r's producer. Either way it is computed from this point of the stream.
  const producer = ix.producer.get(r);
  const origin = new Set([r]);
  if (producer && SKIP_NORM_OPS.has(producer.opType ?? "")) for (const o of producer.output ?? []) if (o) origin.add(o);
  const candidates = (ix.consumers.get(r) ?? []).filter((n) => {
    const ins = n.input ?? [];
    if (n.opType === "Add" && (!n.domain || n.domain === "ai.onnx")) {
      if (ins.length !== 2) return false;
      const other = ins[0] === r ? ins[1]! : ins[0]!;
      // A residual add sums r with a branch computed from r; an add of a constant (bias, eps) is not one.
      return other !== r && !isConstant(ix, other) && dependsOn(ix, other, origin);
    }
    if (SKIP_NORM_OPS.has(n.opType ?? "") && n.domain === "com.microsoft") {
      if (ins[0] !== r && ins[1] !== r) return false;
      const other = ins[0] === r ? ins[1]! : ins[0]!;
      return !!other && dependsOn(ix, other, origin);
    }
    return false;
  });
  if (candidates.length > 1) {
    throw new GraphStructureError(
      `residual tensor ${r} feeds ${candidates.length} possible residual sums (${candidates.map(nodeLabel).join(", ")})`,
    );
  }
  return candidates[0] ?? null;
}

/** Layer number in a node name such as "/model/layers.3/Add_1" or "model.layers.3.post_attention_layernorm". */
function layerNumberInName(name: string | null | undefined): number | null {
  const m = /(?:^|[/._])layers?[._/](\d+)(?=[/._]|$)/.exec(name ?? "");
  return m ? Number(m[1]) : null;
}

function checkNames(sums: SumPoint[], per: 1 | 2): void {
  const numbered = sums.map((s, j) => ({ j, n: layerNumberInName(s.node.name) })).filter((x) => x.n !== null);
  if (numbered.length === 0) return;
  const perBlock = numbered.every(({ j, n }) => n === Math.floor(j / per));
  // genai: sum point j is computed by the norm that starts the next half-block (the last by layers.L's final norm).
  const perNextNorm = numbered.every(({ j, n }) => n === (per === 2 ? Math.floor((j + 1) / 2) : j + 1));
  if (!perBlock && !perNextNorm) {
    const shown = numbered
      .slice(0, 6)
      .map(({ j, n }) => `#${j}:layers.${n}`)
      .join(" ");
    throw new GraphStructureError(
      `node names disagree with the residual chain (${shown} ...): not hooking a possibly wrong tensor`,
    );
  }
}

export interface FindOptions {
  numLayers: number;
  hiddenSize: number;
  /** Graph input with the token ids; default "input_ids", else the first integer input. */
  inputIds?: string;
  /** Graph output with the logits; default "logits", else the first output. */
  logits?: string;
}

export function findResidualStream(ix: GraphIndex, opts: FindOptions): ResidualStream {
  const idsInput =
    opts.inputIds ??
    (ix.graphInputs.has("input_ids")
      ? "input_ids"
      : [...ix.graphInputs].find((n) => {
          const t = (ix.graph.input ?? []).find((v) => v.name === n)?.type?.tensorType?.elemType;
          return t === DataType.INT64 || t === DataType.INT32;
        }));
  if (!idsInput || !ix.graphInputs.has(idsInput)) throw new GraphStructureError("graph has no token-id input");
  const logits = opts.logits ?? (ix.graphOutputs.has("logits") ? "logits" : (ix.graph.output ?? [])[0]?.name);
  if (!logits || !ix.graphOutputs.has(logits)) throw new GraphStructureError("graph has no logits output");

  const embedding = findEmbedding(ix, idsInput);
  const table = ix.initializers.get(embedding.input?.[0] ?? "");
  const tableDims = (table?.dims ?? []).map(Number);
  if (embedding.opType === "Gather" && tableDims.length === 2 && tableDims[1] !== opts.hiddenSize) {
    throw new GraphStructureError(`embedding width ${tableDims[1]} is not hidden_size ${opts.hiddenSize}`);
  }
  let elemType = table?.dataType ?? 0;
  if (embedding.opType === "GatherBlockQuantized") {
    elemType = ix.initializers.get(embedding.input?.[2] ?? "")?.dataType ?? 0; // scales carry the float type
  }

  let r = embedding.output?.[0] ?? "";
  const sums: SumPoint[] = [];
  for (let passThrough = 0; ; ) {
    const next = nextSum(ix, r);
    if (!next) {
      // Before the first sum point only: follow a lone Cast or constant scale of the embedding.
      const cs = ix.consumers.get(r) ?? [];
      const only = cs.length === 1 ? cs[0]! : null;
      const passable =
        only &&
        sums.length === 0 &&
        passThrough < 2 &&
        (only.opType === "Cast" ||
          (only.opType === "Mul" && (only.input ?? []).some((i) => i !== r && isConstant(ix, i))));
      if (!passable) break;
      if (only.opType === "Cast") elemType = intAttr(only, "to") ?? elemType;
      r = only.output?.[0] ?? "";
      passThrough++;
      continue;
    }
    if (next.opType === "Add") {
      const out = next.output?.[0] ?? "";
      sums.push({ kind: "add", node: next, output: out });
      r = out;
    } else {
      const sumOutput = next.output?.[3] || null;
      sums.push({ kind: "skip-norm", node: next, sumOutput });
      if (!sumOutput) break;
      r = sumOutput;
    }
  }

  const L = opts.numLayers;
  let per: 1 | 2;
  if (sums.length === 2 * L) per = 2;
  else if (sums.length === L) per = 1;
  else {
    throw new GraphStructureError(
      `found ${sums.length} residual sums along the chain from the embedding, expected ${2 * L} (or ${L}) for ${L} layers`,
    );
  }
  const last = sums[sums.length - 1]!;
  for (let j = 0; j < sums.length - 1; j++) {
    if (sums[j]!.kind === "skip-norm" && !(sums[j] as { sumOutput: string | null }).sumOutput) {
      throw new GraphStructureError(
        `fused norm ${nodeLabel(sums[j]!.node)} hides the residual sum in the middle of the chain`,
      );
    }
  }
  // The chain must end at the final norm: from there only the LM head projects on the way to the logits.
  const end = last.kind === "add" ? last.output : (last.node.output?.[0] ?? "");
  const between = nodesBetween(ix, end, logits);
  if (between.length === 0 && end !== logits) {
    throw new GraphStructureError(`the last residual sum (${nodeLabel(last.node)}) does not reach ${logits}`);
  }
  const projections = between.filter((n) => PROJECTION_OPS.has(n.opType ?? ""));
  if (projections.length > 1) {
    throw new GraphStructureError(
      `the residual chain stops at ${nodeLabel(last.node)}, but ${projections.length} projections follow before ${logits}: layers were missed`,
    );
  }
  checkNames(sums, per);

  for (const s of sums) {
    const t = s.kind === "add" ? s.output : s.sumOutput;
    const declared = t ? declaredElemType(ix, t) : null;
    if (declared !== null && declared !== elemType) {
      throw new GraphStructureError(
        `residual tensor ${t} is declared elem type ${declared}, the embedding gives ${elemType}`,
      );
    }
  }
  if (elemType !== DataType.FLOAT && elemType !== DataType.FLOAT16) {
    throw new GraphStructureError(`residual stream elem type ${elemType} is neither float32 nor float16`);
  }

  const afterLayer = Array.from({ length: L }, (_, k) => sums[per === 2 ? 2 * k + 1 : k]!);
  return {
    dtype: elemType === DataType.FLOAT ? "float32" : "float16",
    elemType,
    embedding,
    sums,
    afterLayer,
    sumsPerLayer: per,
  };
}
