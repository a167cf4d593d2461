/**
 * Small synthetic decoder graphs (fp32, random weights) in export styles the two real models do not cover:
 * fused `SkipLayerNormalization` with beta and bias inputs (the optimum / ORT transformers optimizer
 * style), and parallel blocks with one residual Add per layer. No attention: the hook search only cares
 * about how the residual stream is summed. Node names carry no layer numbers, so only the chain structure
 * can place the hooks.
 */
import {
  DataType,
  encodeModel,
  makeNode,
  onnx,
  tensorValueInfo,
  type NodeProto,
  type TensorProto,
} from "../../src/gpu-backend/graph/onnx-model.js";
import { seeded } from "./helpers-delta.js";

export type SyntheticStyle = "skip-layer-norm" | "parallel-add";

export interface Synthetic {
  bytes: Uint8Array;
  numLayers: number;
  hiddenSize: number;
  vocab: number;
  /** Name of the node that forms the residual stream after layer k, by construction. */
  sumNode: (k: number) => string;
}

export function syntheticDecoder(
  style: SyntheticStyle,
  numLayers: number,
  hidden: number,
  vocab: number,
  seed: number,
): Synthetic {
  const rand = seeded(seed);
  const inits: TensorProto[] = [];
  const weight = (name: string, dims: number[], scale: number, offset = 0): string => {
    const n = dims.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, () => offset + rand() * scale);
    inits.push(onnx.TensorProto.create({ name, dataType: DataType.FLOAT, dims, rawData: new Uint8Array(data.buffer) }));
    return name;
  };
  const nodes: NodeProto[] = [];
  const gamma = weight("gamma", [hidden], 0.1, 1);
  const beta = weight("beta", [hidden], 0.1);
  const layerNorm = (name: string, x: string): string => {
    nodes.push(
      makeNode(
        "LayerNormalization",
        name,
        [x, gamma, beta],
        [`${name}_out`],
        [onnx.AttributeProto.create({ name: "axis", type: onnx.AttributeProto.AttributeType.INT, i: -1 })],
      ),
    );
    return `${name}_out`;
  };

  nodes.push(makeNode("Gather", "embed", [weight("embed_table", [vocab, hidden], 1), "input_ids"], ["embedded"]));
  let finalNormed: string;
  let sumNode: (k: number) => string;
  if (style === "skip-layer-norm") {
    // Two fused sums per layer; the residual flows through output 3, the last one (final norm) hides it.
    let r = "embedded";
    let normed = layerNorm("first_norm", r);
    const sums = 2 * numLayers;
    for (let j = 0; j < sums; j++) {
      const branch = `branch_${j}`;
      nodes.push(
        makeNode("MatMul", `proj_${j}`, [normed, weight(`w_${j}`, [hidden, hidden], 1 / Math.sqrt(hidden))], [branch]),
      );
      const last = j === sums - 1;
      const outs = last ? [`sln_${j}_out`] : [`sln_${j}_out`, "", "", `residual_${j}`];
      nodes.push(
        onnx.NodeProto.create({
          opType: "SkipLayerNormalization",
          domain: "com.microsoft",
          name: `sln_${j}`,
          input: [r, branch, gamma, beta, weight(`sum_bias_${j}`, [hidden], 0.2)],
          output: outs,
          attribute: [
            onnx.AttributeProto.create({ name: "epsilon", type: onnx.AttributeProto.AttributeType.FLOAT, f: 1e-5 }),
          ],
        }),
      );
      normed = `sln_${j}_out`;
      r = `residual_${j}`;
    }
    finalNormed = normed;
    sumNode = (k) => `sln_${2 * k + 1}`;
  } else {
    // Parallel blocks: r + (attn-like(norm r) + mlp-like(norm r)), one residual Add per layer.
    let r = "embedded";
    for (let k = 0; k < numLayers; k++) {
      const n = layerNorm(`norm_${k}`, r);
      nodes.push(
        makeNode("MatMul", `a_${k}`, [n, weight(`wa_${k}`, [hidden, hidden], 1 / Math.sqrt(hidden))], [`a_${k}_out`]),
      );
      nodes.push(
        makeNode("MatMul", `m_${k}`, [n, weight(`wm_${k}`, [hidden, hidden], 1 / Math.sqrt(hidden))], [`m_${k}_out`]),
      );
      nodes.push(makeNode("Add", `branches_${k}`, [`a_${k}_out`, `m_${k}_out`], [`branches_${k}_out`]));
      nodes.push(makeNode("Add", `residual_add_${k}`, [r, `branches_${k}_out`], [`residual_${k}`]));
      r = `residual_${k}`;
    }
    finalNormed = layerNorm("final_norm", r);
    sumNode = (k) => `residual_add_${k}`;
  }
  nodes.push(
    makeNode(
      "MatMul",
      "lm_head",
      [finalNormed, weight("lm_head_w", [hidden, vocab], 1 / Math.sqrt(hidden))],
      ["logits"],
    ),
  );

  const model = onnx.ModelProto.create({
    irVersion: 8,
    producerName: "delta-hook-tests",
    opsetImport: [
      onnx.OperatorSetIdProto.create({ domain: "", version: 17 }),
      onnx.OperatorSetIdProto.create({ domain: "com.microsoft", version: 1 }),
    ],
    graph: onnx.GraphProto.create({
      name: `synthetic_${style}`,
      node: nodes,
      initializer: inits,
      input: [tensorValueInfo("input_ids", DataType.INT64, ["batch_size", "sequence_length"])],
      output: [tensorValueInfo("logits", DataType.FLOAT, ["batch_size", "sequence_length", vocab])],
    }),
  });
  return { bytes: encodeModel(model), numLayers, hiddenSize: hidden, vocab, sumNode };
}
