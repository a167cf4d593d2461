/**
 * The Lens probe as a job and as an artifact: collect last-token hidden states for parallel prompts
 * per language (../hidden-states.ts), run the probe math per layer (math.ts), and save the result
 * as a safetensors file plus a JSON manifest that a subspace delta can later be made from.
 *
 * Values are kept as float32 (computed in float64, rounded once at the end): that is what the file
 * holds, so a probe loaded back is bit-identical to the one saved, and deltas made from either match.
 *
 * Files, for a probe with id P in a folder:
 *   P.safetensors   layers.{k}.means [L, d]   m_l, one row per language in `languages` order
 *                   layers.{k}.m_a   [d]      the language-agnostic direction (the design notes' m_a, rescaled)
 *                   layers.{k}.M_s   [d, r_k] language-specific basis, orthonormal columns
 *                   layers.{k}.delta [L, d]   Delta_l per language (the central language's row is 0)
 *   P.json          the manifest (ProbeManifest below), written after the tensors, so a folder with a
 *                   manifest has its tensors; the manifest records the tensors' SHA-256 to pair them.
 * Each file is written atomically (files.ts: a temporary name in the same folder, fsync, rename).
 */
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { z } from "zod";
import { DeltaId, Fingerprint } from "../../../protocol/delta.js";
import {
  parseSafetensors,
  serializeSafetensors,
  tensorToFloat32,
  type TensorInput,
} from "../../../protocol/safetensors.js";
import { writeFileAtomic } from "../../files.js";
import { modelFingerprint } from "../../model/fingerprint.js";
import {
  HiddenStateCollector,
  type CollectorOptions,
  type LoadedModel,
  type Truncation,
  DEFAULT_MAX_PROMPT_TOKENS,
} from "../hidden-states.js";
import { columnsToRowMajor, fitLanguageSubspaces, languageMean, type SubspaceOptions } from "./math.js";

/** One layer of a probe, float32, row-major. */
export interface ProbeLayer {
  layer: number;
  /** Columns of M_s at this layer (at most the requested rank; lower where the languages span less). */
  rank: number;
  /** [languages x hidden]: m_l. */
  means: Float32Array;
  /** [hidden]: m_a. */
  m_a: Float32Array;
  /** [hidden x rank]: M_s. */
  M_s: Float32Array;
  /** Delta_l per language, [hidden] each. */
  deltas: Record<string, Float32Array>;
}

export interface LensProbe {
  id: string;
  baseModel: { id: string; fingerprint: string };
  languages: string[];
  central: string;
  hiddenSize: number;
  /** r as asked (L - 1 by default). */
  requestedRank: number;
  /** Prompts per language that went into the means. */
  counts: Record<string, number>;
  prompt: { maxTokens: number; truncation: Truncation; system: string | null };
  createdAt: string;
  layers: ProbeLayer[];
}

export interface ProbeOptions extends CollectorOptions, Pick<SubspaceOptions, "rank" | "relativeTolerance"> {
  /** Probe id (default: derived from the model, the prompts' results and the settings). */
  id?: string;
  /** The base model's fingerprint, when already known (default: computed from the ONNX files). */
  fingerprint?: string;
  /** Checked before and after each language's states are collected. */
  signal?: AbortSignal;
  /** Called after each language's states are collected. */
  onProgress?: (p: ProbeProgress) => void;
}

interface ProbeProgress {
  /** Languages collected so far, of `total`. */
  done: number;
  total: number;
  /** Time spent collecting states so far (the rest of a probe is its math). */
  collectMs: number;
}

/**
 * Probes `layers` of a model with parallel prompts per language. `model` is a model directory, parts
 * already loaded, or a collector (its session is reused; it must expose every layer asked for).
 */
export async function probe(
  model: string | LoadedModel | HiddenStateCollector,
  promptsByLanguage: Readonly<Record<string, readonly string[]>>,
  layers: readonly number[],
  central = "en",
  options: ProbeOptions = {},
): Promise<LensProbe> {
  const languages = Object.keys(promptsByLanguage);
  if (!languages.includes(central)) throw new RangeError(`the central language "${central}" has no prompts`);
  for (const lang of languages)
    if (promptsByLanguage[lang]!.length === 0) throw new RangeError(`no prompts for "${lang}"`);
  const wanted = [...new Set(layers)].sort((a, b) => a - b);
  if (wanted.length === 0) throw new RangeError("no layers to probe");

  const own = !(model instanceof HiddenStateCollector);
  const collector =
    model instanceof HiddenStateCollector ? model : await HiddenStateCollector.create(model, wanted, options);
  try {
    const missing = wanted.filter((l) => !collector.layers.includes(l));
    if (missing.length > 0) throw new RangeError(`the collector does not expose layers ${missing.join(", ")}`);
    const { info } = collector;
    const d = info.hiddenSize;

    // Per language, per layer: the mean of the last-token states (float64 sums). Languages run one after
    // the other so only one language's states are held at a time.
    const means = new Map<number, Record<string, Float64Array>>(wanted.map((l) => [l, {}]));
    const counts: Record<string, number> = {};
    const { signal, onProgress } = options;
    let collectMs = 0;
    let done = 0;
    for (const lang of languages) {
      const prompts = promptsByLanguage[lang]!;
      signal?.throwIfAborted();
      const t = performance.now();
      const states = await collector.collect(prompts);
      collectMs += performance.now() - t;
      onProgress?.({ done: ++done, total: languages.length, collectMs });
      signal?.throwIfAborted();
      counts[lang] = states.count;
      for (const layer of wanted) {
        const rows = states.byLayer.get(layer)!;
        means.get(layer)![lang] = languageMean(
          Array.from({ length: states.count }, (_, r) => rows.subarray(r * d, (r + 1) * d)),
          d,
        );
      }
    }

    const requestedRank = options.rank ?? languages.length - 1;
    const subspaceOptions: SubspaceOptions = { central, rank: requestedRank };
    if (options.relativeTolerance !== undefined) subspaceOptions.relativeTolerance = options.relativeTolerance;
    const probeLayers: ProbeLayer[] = wanted.map((layer) => {
      const fit = fitLanguageSubspaces(means.get(layer)!, subspaceOptions);
      const deltas: Record<string, Float32Array> = {};
      fit.languages.forEach((lang, l) => (deltas[lang] = Float32Array.from(fit.shifts[l]!)));
      const flatMeans = new Float32Array(languages.length * d);
      fit.means.forEach((m, l) => flatMeans.set(m, l * d));
      return {
        layer,
        rank: fit.rank,
        means: flatMeans,
        m_a: Float32Array.from(fit.agnostic),
        M_s: columnsToRowMajor(fit.specific, d),
        deltas,
      };
    });

    const fingerprint = options.fingerprint ?? (await modelFingerprint(info.onnxPath));
    const result: LensProbe = {
      id: "",
      baseModel: { id: info.id, fingerprint },
      languages,
      central,
      hiddenSize: d,
      requestedRank,
      counts,
      prompt: {
        maxTokens: options.maxPromptTokens ?? DEFAULT_MAX_PROMPT_TOKENS,
        truncation: options.truncation ?? "content",
        system: options.system ?? null,
      },
      createdAt: new Date().toISOString(),
      layers: probeLayers,
    };
    result.id = options.id ?? defaultProbeId(result);
    DeltaId.parse(result.id);
    return result;
  } finally {
    if (own) await collector.release();
  }
}

/** `probe-<model>-<16 hex>`: a hash of what the probe found and how, so equal probes get equal ids. */
function defaultProbeId(p: LensProbe): string {
  const h = createHash("sha256");
  h.update(
    JSON.stringify({
      model: p.baseModel,
      languages: p.languages,
      central: p.central,
      rank: p.requestedRank,
      prompt: p.prompt,
      counts: p.counts,
    }),
  );
  for (const l of p.layers)
    h.update(new Uint8Array(l.M_s.buffer, l.M_s.byteOffset, l.M_s.byteLength)).update(
      new Uint8Array(l.means.buffer, l.means.byteOffset, l.means.byteLength),
    );
  const model = p.baseModel.id.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 64);
  return `probe-${model}-${h.digest("hex").slice(0, 16)}`;
}

const PROBE_FORMAT = "lens-probe/1";

export const ProbeManifest = z
  .object({
    format: z.literal(PROBE_FORMAT),
    id: DeltaId,
    base_model: z.object({ id: z.string().min(1), fingerprint: Fingerprint }).strict(),
    languages: z.array(z.string().min(1)).min(2),
    central: z.string().min(1),
    hidden_size: z.number().int().positive(),
    /** r as asked; each layer's own rank is in `ranks`. */
    rank: z.number().int().positive(),
    layers: z.array(z.number().int().nonnegative()).min(1),
    /** Layer (as a string key) -> columns of M_s there. */
    ranks: z.record(z.string(), z.number().int().positive()),
    n_per_language: z.record(z.string(), z.number().int().positive()),
    prompt: z
      .object({
        max_tokens: z.number().int().positive(),
        truncation: z.enum(["content", "head"]),
        system: z.string().nullable(),
      })
      .strict(),
    tensors: z.object({ file: z.string().min(1), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
    created_at: z.iso.datetime({ offset: true }),
  })
  .strict();
export type ProbeManifest = z.infer<typeof ProbeManifest>;

const tensorName = (layer: number, part: "means" | "m_a" | "M_s" | "delta") => `layers.${layer}.${part}`;

/** The probe's safetensors bytes and manifest, as saveProbe writes them. */
export function encodeProbe(p: LensProbe): { bytes: Uint8Array; manifest: ProbeManifest } {
  const d = p.hiddenSize;
  const L = p.languages.length;
  const tensors = new Map<string, TensorInput>();
  for (const l of p.layers) {
    const deltas = new Float32Array(L * d);
    p.languages.forEach((lang, i) => deltas.set(l.deltas[lang]!, i * d));
    tensors.set(tensorName(l.layer, "means"), { dtype: "F32", shape: [L, d], data: l.means });
    tensors.set(tensorName(l.layer, "m_a"), { dtype: "F32", shape: [d], data: l.m_a });
    tensors.set(tensorName(l.layer, "M_s"), { dtype: "F32", shape: [d, l.rank], data: l.M_s });
    tensors.set(tensorName(l.layer, "delta"), { dtype: "F32", shape: [L, d], data: deltas });
  }
  const bytes = serializeSafetensors(tensors, { format: PROBE_FORMAT, probe_id: p.id });
  const manifest = ProbeManifest.parse({
    format: PROBE_FORMAT,
    id: p.id,
    base_model: p.baseModel,
    languages: p.languages,
    central: p.central,
    hidden_size: d,
    rank: p.requestedRank,
    layers: p.layers.map((l) => l.layer),
    ranks: Object.fromEntries(p.layers.map((l) => [String(l.layer), l.rank])),
    n_per_language: p.counts,
    prompt: { max_tokens: p.prompt.maxTokens, truncation: p.prompt.truncation, system: p.prompt.system },
    tensors: { file: `${p.id}.safetensors`, sha256: createHash("sha256").update(bytes).digest("hex") },
    created_at: p.createdAt,
  });
  return { bytes, manifest };
}

/** Rebuilds a probe from its files' contents, checking every shape against the manifest. */
export function decodeProbe(bytes: Uint8Array, manifestInput: unknown): LensProbe {
  const m = ProbeManifest.parse(manifestInput);
  const sha = createHash("sha256").update(bytes).digest("hex");
  if (sha !== m.tensors.sha256)
    throw new Error(`probe ${m.id}: the tensors file does not match its manifest (sha256 ${sha})`);
  const { tensors } = parseSafetensors(bytes);
  const d = m.hidden_size;
  const L = m.languages.length;
  const take = (name: string, shape: number[]): Float32Array => {
    const t = tensors.get(name);
    if (!t) throw new Error(`probe ${m.id}: tensor ${name} is missing`);
    if (t.dtype !== "F32" || t.shape.length !== shape.length || t.shape.some((x, i) => x !== shape[i])) {
      throw new Error(
        `probe ${m.id}: tensor ${name} is ${t.dtype} [${t.shape.join(", ")}], expected F32 [${shape.join(", ")}]`,
      );
    }
    return tensorToFloat32(t);
  };
  const layers = m.layers.map((layer): ProbeLayer => {
    const rank = m.ranks[String(layer)];
    if (rank === undefined) throw new Error(`probe ${m.id}: no rank recorded for layer ${layer}`);
    const all = take(tensorName(layer, "delta"), [L, d]);
    const deltas: Record<string, Float32Array> = {};
    m.languages.forEach((lang, i) => (deltas[lang] = all.slice(i * d, (i + 1) * d)));
    return {
      layer,
      rank,
      means: take(tensorName(layer, "means"), [L, d]),
      m_a: take(tensorName(layer, "m_a"), [d]),
      M_s: take(tensorName(layer, "M_s"), [d, rank]),
      deltas,
    };
  });
  if (tensors.size !== layers.length * 4)
    throw new Error(`probe ${m.id}: the tensors file holds tensors the manifest does not name`);
  return {
    id: m.id,
    baseModel: m.base_model,
    languages: m.languages,
    central: m.central,
    hiddenSize: d,
    requestedRank: m.rank,
    counts: m.n_per_language,
    prompt: { maxTokens: m.prompt.max_tokens, truncation: m.prompt.truncation, system: m.prompt.system },
    createdAt: m.created_at,
    layers,
  };
}

export interface ProbeFiles {
  tensorsPath: string;
  manifestPath: string;
}

function probeFiles(dir: string, id: string): ProbeFiles {
  DeltaId.parse(id);
  return { tensorsPath: join(dir, `${id}.safetensors`), manifestPath: join(dir, `${id}.json`) };
}

/** Writes the probe's two files into `dir` (created if missing), each atomically. */
export function saveProbe(p: LensProbe, dir: string): ProbeFiles {
  const { bytes, manifest } = encodeProbe(p);
  const files = probeFiles(dir, p.id);
  mkdirSync(dir, { recursive: true });
  writeFileAtomic(dir, basename(files.tensorsPath), bytes);
  writeFileAtomic(dir, basename(files.manifestPath), `${JSON.stringify(manifest, null, 2)}\n`);
  return files;
}

export function loadProbe(dir: string, id: string): LensProbe {
  const files = probeFiles(dir, id);
  const manifest: unknown = JSON.parse(readFileSync(files.manifestPath, "utf8"));
  const loaded = decodeProbe(new Uint8Array(readFileSync(files.tensorsPath)), manifest);
  if (loaded.id !== id) throw new Error(`${files.manifestPath} holds probe ${loaded.id}, not ${id}`);
  return loaded;
}
