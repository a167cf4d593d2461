/**
 * Reading, indexing and writing an ONNX ModelProto in memory (onnx-proto: protobufjs with the ONNX 1.10
 * schema). The graph-surgery modules in this folder work on these decoded objects and never on files,
 * because the backend creates its InferenceSession from the edited bytes.
 */
import onnxProto from "onnx-proto";
import type { onnx as OnnxTypes } from "onnx-proto";

export const onnx = onnxProto.onnx;
export type ModelProto = OnnxTypes.ModelProto;
export type GraphProto = OnnxTypes.IGraphProto;
export type NodeProto = OnnxTypes.INodeProto;
export type TensorProto = OnnxTypes.ITensorProto;
export type ValueInfoProto = OnnxTypes.IValueInfoProto;

export const DataType = onnx.TensorProto.DataType;

export function decodeModel(bytes: Uint8Array): ModelProto {
  try {
    return onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new Error(`not an ONNX model: ${(err as Error).message}`);
  }
}

export function encodeModel(model: ModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}

export function graphOf(model: ModelProto): GraphProto {
  if (!model.graph) throw new Error("ONNX model has no graph");
  return model.graph;
}

/** Opset version of the default (ai.onnx) domain: some ops (Unsqueeze) changed signature at 13. */
export function defaultOpset(model: ModelProto): number {
  for (const o of model.opsetImport ?? []) {
    if (!o.domain || o.domain === "ai.onnx") return Number(o.version ?? 0);
  }
  throw new Error("ONNX model imports no ai.onnx opset");
}

/**
 * Where an initializer's bytes live outside the ModelProto. The caller must hand these files to
 * InferenceSession.create as `externalData` when it creates the session from bytes: ORT then refuses to
 * read relative paths itself ("external data path ... escapes working directory").
 */
export function externalDataLocations(modelOrBytes: Uint8Array | ModelProto): string[] {
  const model = modelOrBytes instanceof Uint8Array ? decodeModel(modelOrBytes) : modelOrBytes;
  const found = new Set<string>();
  const visit = (g: GraphProto | null | undefined): void => {
    if (!g) return;
    for (const t of g.initializer ?? []) {
      if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) continue;
      const loc = (t.externalData ?? []).find((e) => e.key === "location")?.value;
      if (!loc) throw new Error(`initializer ${t.name} is external but names no location`);
      found.add(loc);
    }
    for (const n of g.node ?? [])
      for (const a of n.attribute ?? []) {
        visit(a.g);
        for (const sub of a.graphs ?? []) visit(sub);
      }
  };
  visit(model.graph);
  return [...found].sort();
}

export interface GraphIndex {
  graph: GraphProto;
  nodes: NodeProto[];
  /** Tensor name -> the node that produces it (graph inputs and initializers have none). */
  producer: Map<string, NodeProto>;
  /** Tensor name -> nodes that read it, in graph order. */
  consumers: Map<string, NodeProto[]>;
  initializers: Map<string, TensorProto>;
  graphInputs: Set<string>;
  graphOutputs: Set<string>;
  /** Every name in use (tensors and nodes), so new names can be checked for collisions. */
  names: Set<string>;
}

export function indexGraph(graph: GraphProto): GraphIndex {
  const nodes = graph.node ?? [];
  const producer = new Map<string, NodeProto>();
  const consumers = new Map<string, NodeProto[]>();
  const names = new Set<string>();
  for (const n of nodes) {
    if (n.name) names.add(n.name);
    for (const o of n.output ?? [])
      if (o) {
        producer.set(o, n);
        names.add(o);
      }
    for (const i of n.input ?? [])
      if (i) {
        const list = consumers.get(i);
        if (list) {
          if (list[list.length - 1] !== n) list.push(n);
        } else consumers.set(i, [n]);
      }
  }
  const initializers = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? [])
    if (t.name) {
      initializers.set(t.name, t);
      names.add(t.name);
    }
  const graphInputs = new Set((graph.input ?? []).map((v) => v.name ?? "").filter(Boolean));
  const graphOutputs = new Set((graph.output ?? []).map((v) => v.name ?? "").filter(Boolean));
  for (const n of [...graphInputs, ...graphOutputs]) names.add(n);
  for (const v of graph.valueInfo ?? []) if (v.name) names.add(v.name);
  return { graph, nodes, producer, consumers, initializers, graphInputs, graphOutputs, names };
}

/** True when a tensor is fixed at load time (initializer or Constant output), not computed from inputs. */
export function isConstant(ix: GraphIndex, name: string): boolean {
  if (ix.initializers.has(name) && !ix.graphInputs.has(name)) return true;
  return ix.producer.get(name)?.opType === "Constant";
}

/** True when `target` is computed (transitively) from any of `sources`. */
export function dependsOn(ix: GraphIndex, target: string, sources: ReadonlySet<string>): boolean {
  const seen = new Set<string>();
  const stack = [target];
  while (stack.length) {
    const t = stack.pop()!;
    if (sources.has(t)) return true;
    if (seen.has(t)) continue;
    seen.add(t);
    const p = ix.producer.get(t);
    if (p) for (const i of p.input ?? []) if (i && !seen.has(i)) stack.push(i);
  }
  return false;
}

/** Nodes that read `from` (transitively) and whose results reach `to`: the path between two tensors. */
export function nodesBetween(ix: GraphIndex, from: string, to: string): NodeProto[] {
  const downstream = new Set<NodeProto>();
  const stack = [from];
  const seenT = new Set<string>();
  while (stack.length) {
    const t = stack.pop()!;
    if (seenT.has(t)) continue;
    seenT.add(t);
    for (const c of ix.consumers.get(t) ?? []) {
      if (downstream.has(c)) continue;
      downstream.add(c);
      for (const o of c.output ?? []) if (o) stack.push(o);
    }
  }
  const result: NodeProto[] = [];
  const seenUp = new Set<string>();
  const up = [to];
  while (up.length) {
    const t = up.pop()!;
    if (seenUp.has(t)) continue;
    seenUp.add(t);
    const p = ix.producer.get(t);
    if (!p || !downstream.has(p)) continue;
    if (!result.includes(p)) result.push(p);
    for (const i of p.input ?? []) if (i) up.push(i);
  }
  return result;
}

export function intAttr(node: NodeProto, name: string): number | null {
  const a = (node.attribute ?? []).find((x) => x.name === name);
  return a?.i == null ? null : Number(a.i);
}

export function int64Initializer(name: string, values: number[]): TensorProto {
  const raw = new Uint8Array(8 * values.length);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setBigInt64(8 * i, BigInt(v), true));
  return onnx.TensorProto.create({ name, dataType: DataType.INT64, dims: [values.length], rawData: raw });
}

export type Dim = string | number;

export function tensorValueInfo(name: string, elemType: number, dims: Dim[]): ValueInfoProto {
  return onnx.ValueInfoProto.create({
    name,
    type: onnx.TypeProto.create({
      tensorType: onnx.TypeProto.Tensor.create({
        elemType,
        shape: onnx.TensorShapeProto.create({
          dim: dims.map((d) =>
            onnx.TensorShapeProto.Dimension.create(typeof d === "number" ? { dimValue: d } : { dimParam: d }),
          ),
        }),
      }),
    }),
  });
}

export function makeNode(
  opType: string,
  name: string,
  inputs: string[],
  outputs: string[],
  attributes: OnnxTypes.IAttributeProto[] = [],
): NodeProto {
  return onnx.NodeProto.create({ opType, name, input: inputs, output: outputs, attribute: attributes });
}

export function intsAttribute(name: string, ints: number[]): OnnxTypes.IAttributeProto {
  return onnx.AttributeProto.create({ name, type: onnx.AttributeProto.AttributeType.INTS, ints });
}

/** Symbolic name (or fixed size) of dimension `axis` of a graph input, when the graph declares one. */
export function inputDim(graph: GraphProto, input: string, axis: number): Dim | null {
  const v = (graph.input ?? []).find((x) => x.name === input);
  const d = v?.type?.tensorType?.shape?.dim?.[axis];
  if (!d) return null;
  if (d.dimParam) return d.dimParam;
  if (d.dimValue != null && Number(d.dimValue) > 0) return Number(d.dimValue);
  return null;
}
