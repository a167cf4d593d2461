/**
 * Reads a model directory in onnxruntime-genai layout (`genai_config.json`) or Hugging Face ONNX
 * layout (`config.json` + `model.onnx`) into one description the rest of the backend uses.
 */
import { existsSync, readFileSync } from "node:fs";
import { basename, join, resolve } from "node:path";
import { z } from "zod";

interface ModelIO {
  inputIds: string;
  attentionMask: string;
  positionIds: string | null;
  pastKey: (layer: number) => string;
  pastValue: (layer: number) => string;
  logits: string;
  presentKey: (layer: number) => string;
  presentValue: (layer: number) => string;
}

export interface ModelInfo {
  /** The id clients use in `model`: the directory's name. */
  id: string;
  dir: string;
  /** Absolute path of the ONNX graph. */
  onnxPath: string;
  layout: "genai" | "hf";
  numLayers: number;
  hiddenSize: number;
  numHeads: number;
  numKvHeads: number;
  headSize: number;
  vocabSize: number;
  contextLength: number;
  eosTokenIds: number[];
  bosTokenId: number | null;
  padTokenId: number | null;
  io: ModelIO;
}

const intOrList = z.union([z.number().int(), z.array(z.number().int())]);
const toList = (v: number | number[] | null | undefined): number[] => (v == null ? [] : Array.isArray(v) ? v : [v]);

const GenaiConfig = z.object({
  model: z.object({
    bos_token_id: intOrList.nullish(),
    eos_token_id: intOrList,
    pad_token_id: intOrList.nullish(),
    context_length: z.number().int().positive(),
    vocab_size: z.number().int().positive(),
    decoder: z.object({
      filename: z.string().min(1),
      head_size: z.number().int().positive(),
      hidden_size: z.number().int().positive(),
      num_attention_heads: z.number().int().positive(),
      num_hidden_layers: z.number().int().positive(),
      num_key_value_heads: z.number().int().positive(),
      inputs: z
        .object({
          input_ids: z.string().default("input_ids"),
          attention_mask: z.string().default("attention_mask"),
          position_ids: z.string().optional(),
          past_key_names: z.string().default("past_key_values.%d.key"),
          past_value_names: z.string().default("past_key_values.%d.value"),
        })
        .default({
          input_ids: "input_ids",
          attention_mask: "attention_mask",
          past_key_names: "past_key_values.%d.key",
          past_value_names: "past_key_values.%d.value",
        }),
      outputs: z
        .object({
          logits: z.string().default("logits"),
          present_key_names: z.string().default("present.%d.key"),
          present_value_names: z.string().default("present.%d.value"),
        })
        .default({ logits: "logits", present_key_names: "present.%d.key", present_value_names: "present.%d.value" }),
    }),
  }),
});

const HfConfig = z.object({
  hidden_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  head_dim: z.number().int().positive().optional(),
  vocab_size: z.number().int().positive(),
  max_position_embeddings: z.number().int().positive().default(2048),
  bos_token_id: intOrList.nullish(),
  eos_token_id: intOrList.nullish(),
  pad_token_id: intOrList.nullish(),
});

class ModelDirError extends Error {}

function readJson(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new ModelDirError(`cannot read ${basename(path)}: ${(err as Error).message}`);
  }
}

const named = (pattern: string) => (layer: number) => pattern.replace("%d", String(layer));

export function readModelDir(dirInput: string): ModelInfo {
  const dir = resolve(dirInput);
  const genaiPath = join(dir, "genai_config.json");
  const hfPath = join(dir, "config.json");
  if (existsSync(genaiPath)) {
    const parsed = GenaiConfig.safeParse(readJson(genaiPath));
    if (!parsed.success)
      throw new ModelDirError(
        `genai_config.json: ${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}`,
      );
    const m = parsed.data.model;
    const d = m.decoder;
    const onnxPath = join(dir, d.filename);
    if (!existsSync(onnxPath)) throw new ModelDirError(`genai_config.json names ${d.filename}, which is missing`);
    return {
      id: basename(dir),
      dir,
      onnxPath,
      layout: "genai",
      numLayers: d.num_hidden_layers,
      hiddenSize: d.hidden_size,
      numHeads: d.num_attention_heads,
      numKvHeads: d.num_key_value_heads,
      headSize: d.head_size,
      vocabSize: m.vocab_size,
      contextLength: m.context_length,
      eosTokenIds: toList(m.eos_token_id),
      bosTokenId: toList(m.bos_token_id)[0] ?? null,
      padTokenId: toList(m.pad_token_id)[0] ?? null,
      io: {
        inputIds: d.inputs.input_ids,
        attentionMask: d.inputs.attention_mask,
        positionIds: d.inputs.position_ids ?? "position_ids",
        pastKey: named(d.inputs.past_key_names),
        pastValue: named(d.inputs.past_value_names),
        logits: d.outputs.logits,
        presentKey: named(d.outputs.present_key_names),
        presentValue: named(d.outputs.present_value_names),
      },
    };
  }
  if (existsSync(hfPath)) {
    const parsed = HfConfig.safeParse(readJson(hfPath));
    if (!parsed.success)
      throw new ModelDirError(
        `config.json: ${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}`,
      );
    const c = parsed.data;
    const onnxPath = ["model.onnx", "onnx/model.onnx", "decoder_model_merged.onnx", "onnx/decoder_model_merged.onnx"]
      .map((f) => join(dir, f))
      .find((p) => existsSync(p));
    if (!onnxPath) throw new ModelDirError("config.json found but no model.onnx beside it");
    const generation = existsSync(join(dir, "generation_config.json"))
      ? (readJson(join(dir, "generation_config.json")) as { eos_token_id?: number | number[] })
      : {};
    return {
      id: basename(dir),
      dir,
      onnxPath,
      layout: "hf",
      numLayers: c.num_hidden_layers,
      hiddenSize: c.hidden_size,
      numHeads: c.num_attention_heads,
      numKvHeads: c.num_key_value_heads ?? c.num_attention_heads,
      headSize: c.head_dim ?? c.hidden_size / c.num_attention_heads,
      vocabSize: c.vocab_size,
      contextLength: c.max_position_embeddings,
      eosTokenIds: toList(generation.eos_token_id ?? c.eos_token_id),
      bosTokenId: toList(c.bos_token_id)[0] ?? null,
      padTokenId: toList(c.pad_token_id)[0] ?? null,
      io: {
        inputIds: "input_ids",
        attentionMask: "attention_mask",
        positionIds: "position_ids",
        pastKey: named("past_key_values.%d.key"),
        pastValue: named("past_key_values.%d.value"),
        logits: "logits",
        presentKey: named("present.%d.key"),
        presentValue: named("present.%d.value"),
      },
    };
  }
  throw new ModelDirError(`${dir} holds neither genai_config.json nor config.json`);
}
