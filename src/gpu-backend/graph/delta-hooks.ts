/**
 * Graph surgery that inserts the delta hook h' = h + (h A) B + b on the residual stream after chosen
 * decoder layers (docs/design.md, "One kind of edit: the delta"), and optionally exposes the residual stream as
 * extra graph outputs. Runs once at model load; the backend creates its InferenceSession from `bytes`.
 *
 * Each hooked layer k gets three new graph inputs, one delta per batch row (rows without a delta get zeros):
 *   lens.delta.{k}.A     [batch, hidden, rank_k]
 *   lens.delta.{k}.B     [batch, rank_k, hidden]
 *   lens.delta.{k}.bias  [batch, hidden]
 * in the residual stream's dtype. With h [batch, seq, hidden], MatMul(h, A) is a batched matmul, so every
 * row uses its own A and B at every position; bias is unsqueezed to [batch, 1, hidden] to broadcast over
 * the sequence.
 *
 * Where the sum is a plain Add (fp32 torch exports), the hook adds d = (h A) B + b after it. With d = 0 the
 * result is h exactly, so logits stay bit-identical to the unedited graph.
 * Where the sum is inside a fused SkipLayerNorm, h is not available before the node runs, so the hook
 * recomputes h = input + skip (+ bias), computes d from it, and feeds `input + d` to the fused node: its
 * normalised output and its sum output (the residual stream downstream) then both see h + d. With d = 0 the
 * fused node's inputs are unchanged, but onnxruntime's CPU provider rounds fp16 differently once nodes are
 * added (casts around fp16 ops), so there "zero delta = base" holds to fp16 rounding only; the backend runs
 * the unedited session for batches without any delta.
 *
 * Exposed hidden states (`lens.hidden.{k}`, [batch, seq, hidden]) carry the stream after the delta. They
 * are built so that exposing does not change the logits: see the exposure loop below.
 *
 * Limits: onnx-proto holds the ONNX 1.10 schema (IR 8); fields added later (e.g. metadata_props on nodes,
 * function overloads) are dropped when the edited model is re-encoded. Rank must be >= 1 (zeros for rows
 * without a delta). Unrecognised structures throw GraphStructureError (see residual-stream.ts).
 */
import {
  decodeModel,
  defaultOpset,
  encodeModel,
  externalDataLocations,
  graphOf,
  indexGraph,
  inputDim,
  int64Initializer,
  intsAttribute,
  makeNode,
  tensorValueInfo,
  type GraphIndex,
  type NodeProto,
} from "./onnx-model.js";
import { findResidualStream, type ResidualStream, type SumPoint } from "./residual-stream.js";

export { GraphStructureError } from "./residual-stream.js";

export interface HookPlan {
  /** Layers (0-based) whose OUTPUT residual stream gets the delta h' = h + (h A) B + b. */
  deltaLayers: number[];
  /** Layers whose output residual stream (after the delta, if any) is also exposed as a graph output. */
  exposeHidden?: number[];
}

export interface HookedGraph {
  /** The edited ModelProto, serialized. */
  bytes: Uint8Array;
  /** Dtype of the residual stream (and so of the delta inputs and hidden outputs). */
  dtype: "float32" | "float16";
  /** New graph input names per hooked layer. */
  deltaInputs: Array<{ layer: number; a: string; b: string; bias: string }>;
  /** New graph output names, shape [batch, seq, hidden]. */
  hiddenOutputs: Array<{ layer: number; name: string }>;
  /** External data file locations referenced by the graph (relative paths), for InferenceSession.create's `externalData`. */
  externalData: string[];
}

export interface HookDims {
  numLayers: number;
  hiddenSize: number;
  /** Graph input holding the token ids (default "input_ids"). */
  inputIds?: string;
  /** Graph output holding the logits (default "logits"). */
  logits?: string;
}

const deltaInputNames = (layer: number) => ({
  a: `lens.delta.${layer}.A`,
  b: `lens.delta.${layer}.B`,
  bias: `lens.delta.${layer}.bias`,
});
const hiddenOutputName = (layer: number) => `lens.hidden.${layer}`;

function checkLayers(what: string, layers: number[], numLayers: number): number[] {
  for (const k of layers) {
    if (!Number.isInteger(k) || k < 0 || k >= numLayers)
      throw new RangeError(`${what}: layer ${k} is not in 0..${numLayers - 1}`);
  }
  return [...new Set(layers)].sort((x, y) => x - y);
}

/** Where one sum point's nodes go: inserted before or after an existing node, to keep the node list topologically sorted. */
interface Insertion {
  before: NodeProto[];
  after: NodeProto[];
}

class Surgery {
  readonly added = new Map<NodeProto, Insertion>();
  /** Layer -> operands of the Add that now forms its residual tensor (plain-Add graphs with a delta there). */
  readonly residualOperands = new Map<number, string[]>();
  private readonly used: Set<string>;
  constructor(
    readonly ix: GraphIndex,
    readonly opset: number,
  ) {
    this.used = new Set(ix.names);
  }

  /** Claims a fresh tensor/node name; a clash with the model's own names is an error, never a silent rename. */
  name(n: string): string {
    if (this.used.has(n)) throw new Error(`graph already uses the name ${n}`);
    this.used.add(n);
    return n;
  }

  at(node: NodeProto): Insertion {
    let ins = this.added.get(node);
    if (!ins) {
      ins = { before: [], after: [] };
      this.added.set(node, ins);
    }
    return ins;
  }

  /** Nodes computing d = MatMul(MatMul(h, A), B) + Unsqueeze(bias, 1); returns them and d's name. */
  deltaNodes(
    layer: number,
    h: string,
    inputs: { a: string; b: string; bias: string },
    axes: string | null,
  ): { nodes: NodeProto[]; d: string } {
    const p = `lens/delta.${layer}`;
    const hA = this.name(`${p}/hA`);
    const hAB = this.name(`${p}/hAB`);
    const bias3 = this.name(`${p}/bias_b1d`);
    const d = this.name(`${p}/d`);
    const unsqueeze = axes
      ? makeNode("Unsqueeze", this.name(`${p}/Unsqueeze`), [inputs.bias, axes], [bias3])
      : makeNode("Unsqueeze", this.name(`${p}/Unsqueeze`), [inputs.bias], [bias3], [intsAttribute("axes", [1])]);
    const nodes = [
      makeNode("MatMul", this.name(`${p}/MatMul_A`), [h, inputs.a], [hA]),
      makeNode("MatMul", this.name(`${p}/MatMul_B`), [hA, inputs.b], [hAB]),
      unsqueeze,
      makeNode("Add", this.name(`${p}/Add_bias`), [hAB, bias3], [d]),
    ];
    return { nodes, d };
  }

  /** Renames tensor `from` to `to` wherever the graph produces it (only its producer: consumers keep `from`). */
  renameOutput(node: NodeProto, from: string, to: string): void {
    node.output = (node.output ?? []).map((o) => (o === from ? to : o));
  }
}

/** The residual tensor after a sum point, creating the fused node's sum output if the graph never named it. */
function residualTensor(s: Surgery, sum: SumPoint, layer: number): string {
  if (sum.kind === "add") return sum.output;
  if (sum.sumOutput) return sum.sumOutput;
  const outs = [...(sum.node.output ?? [])];
  while (outs.length < 3) outs.push("");
  const name = s.name(`lens/residual.${layer}`);
  outs[3] = name;
  sum.node.output = outs;
  sum.sumOutput = name;
  return name;
}

function hookSum(
  s: Surgery,
  sum: SumPoint,
  layer: number,
  inputs: { a: string; b: string; bias: string },
  axes: string | null,
): void {
  if (sum.kind === "add") {
    // h is the Add's result under a new name; the original name now carries h + d, so every consumer
    // downstream (next norm, next residual add) reads the edited stream without being rewired.
    const h = s.name(`lens/delta.${layer}/h`);
    s.renameOutput(sum.node, sum.output, h);
    const { nodes, d } = s.deltaNodes(layer, h, inputs, axes);
    nodes.push(makeNode("Add", s.name(`lens/delta.${layer}/Add_residual`), [h, d], [sum.output]));
    s.residualOperands.set(layer, [h, d]);
    s.at(sum.node).after.push(...nodes);
    return;
  }
  // Fused: recompute the sum the node will form, derive d from it, and add d to the node's `input`.
  const ins = [...(sum.node.input ?? [])];
  const biasIndex = sum.node.opType === "SkipLayerNormalization" ? 4 : 3;
  const sumBias = ins[biasIndex] || null;
  const nodes: NodeProto[] = [];
  let h = s.name(`lens/delta.${layer}/h`);
  nodes.push(makeNode("Add", s.name(`lens/delta.${layer}/Add_input_skip`), [ins[0]!, ins[1]!], [h]));
  if (sumBias) {
    const hb = s.name(`lens/delta.${layer}/h_bias`);
    nodes.push(makeNode("Add", s.name(`lens/delta.${layer}/Add_sum_bias`), [h, sumBias], [hb]));
    h = hb;
  }
  const delta = s.deltaNodes(layer, h, inputs, axes);
  nodes.push(...delta.nodes);
  const edited = s.name(`lens/delta.${layer}/input_plus_d`);
  nodes.push(makeNode("Add", s.name(`lens/delta.${layer}/Add_input`), [ins[0]!, delta.d], [edited]));
  ins[0] = edited;
  sum.node.input = ins;
  s.at(sum.node).before.push(...nodes);
}

function analyse(modelBytes: Uint8Array, dims: HookDims) {
  const model = decodeModel(modelBytes);
  const graph = graphOf(model);
  const ix = indexGraph(graph);
  const stream: ResidualStream = findResidualStream(ix, dims);
  return { model, graph, ix, stream };
}

/** Describes where the hooks would go, without editing: for logs and tests. */
export function describeResidualStream(modelBytes: Uint8Array, dims: HookDims) {
  const { stream } = analyse(modelBytes, dims);
  return {
    dtype: stream.dtype,
    sumsPerLayer: stream.sumsPerLayer,
    afterLayer: stream.afterLayer.map((s) => ({
      kind: s.kind,
      node: s.node.name ?? "",
      opType: s.node.opType ?? "",
      tensor: s.kind === "add" ? s.output : s.sumOutput,
    })),
  };
}

export function insertDeltaHooks(modelBytes: Uint8Array, plan: HookPlan, dims: HookDims): HookedGraph {
  const deltaLayers = checkLayers("deltaLayers", plan.deltaLayers, dims.numLayers);
  const exposeLayers = checkLayers("exposeHidden", plan.exposeHidden ?? [], dims.numLayers);
  const { model, graph, ix, stream } = analyse(modelBytes, dims);
  const externalData = externalDataLocations(model);
  if (deltaLayers.length === 0 && exposeLayers.length === 0) {
    return { bytes: modelBytes, dtype: stream.dtype, deltaInputs: [], hiddenOutputs: [], externalData };
  }

  const s = new Surgery(ix, defaultOpset(model));
  const idsName = dims.inputIds ?? "input_ids";
  const batch = inputDim(graph, idsName, 0) ?? "batch_size";
  const seq = inputDim(graph, idsName, 1) ?? "sequence_length";
  const H = dims.hiddenSize;

  // Unsqueeze takes its axes as an input from opset 13 on, as an attribute before.
  let axes: string | null = null;
  if (s.opset >= 13 && deltaLayers.length > 0) {
    axes = s.name("lens/const/axes_1");
    graph.initializer = [...(graph.initializer ?? []), int64Initializer(axes, [1])];
  }

  const deltaInputs: HookedGraph["deltaInputs"] = [];
  for (const k of deltaLayers) {
    const names = deltaInputNames(k);
    const inputs = { a: s.name(names.a), b: s.name(names.b), bias: s.name(names.bias) };
    const rank = `lens_delta_rank_${k}`;
    graph.input = [
      ...(graph.input ?? []),
      tensorValueInfo(inputs.a, stream.elemType, [batch, H, rank]),
      tensorValueInfo(inputs.b, stream.elemType, [batch, rank, H]),
      tensorValueInfo(inputs.bias, stream.elemType, [batch, H]),
    ];
    hookSum(s, stream.afterLayer[k]!, k, inputs, axes);
    deltaInputs.push({ layer: k, ...inputs });
  }

  const hiddenOutputs: HookedGraph["hiddenOutputs"] = [];
  for (const k of exposeLayers) {
    const sum = stream.afterLayer[k]!;
    const name = s.name(hiddenOutputName(k));
    if (sum.kind === "add") {
      // Recompute the residual Add (same op, same operands: the same bits) instead of reading its output:
      // one more consumer on that Add would stop onnxruntime fusing it with the next norm, and the unfused
      // kernels round differently, so exposing would change the logits.
      const operands = s.residualOperands.get(k) ?? [...(sum.node.input ?? [])];
      s.at(sum.node).after.push(makeNode("Add", s.name(`lens/hidden.${k}/Add`), operands, [name]));
    } else {
      // Fused: the node's sum output (added if the exporter left it implicit); an extra output does not
      // change which kernel runs.
      const residual = residualTensor(s, sum, k);
      s.at(sum.node).after.push(makeNode("Identity", s.name(`lens/hidden.${k}/Identity`), [residual], [name]));
    }
    graph.output = [...(graph.output ?? []), tensorValueInfo(name, stream.elemType, [batch, seq, H])];
    hiddenOutputs.push({ layer: k, name });
  }

  const nodes: NodeProto[] = [];
  for (const n of graph.node ?? []) {
    const ins = s.added.get(n);
    if (ins) nodes.push(...ins.before, n, ...ins.after);
    else nodes.push(n);
  }
  graph.node = nodes;
  return { bytes: encodeModel(model), dtype: stream.dtype, deltaInputs, hiddenOutputs, externalData };
}
