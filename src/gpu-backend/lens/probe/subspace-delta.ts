/**
 * A probe turned into a delta file: the closed-form subspace edit (docs/design.md, "One kind of edit")
 *   A = M_s,  B = -lambda M_s^T,  b = alpha Delta_l        at each chosen layer,
 * so h' = h - lambda P_s h + alpha Delta_l: lambda = 1 removes the language-specific component,
 * alpha moves it to alpha times the language's shift from the central language.
 *
 * A delta file has one rank for all its layers; where the probe's layers differ (a layer whose
 * languages span fewer directions), A and B are padded with zero columns, which change nothing.
 */
import { createHash } from "node:crypto";
import { deltaTensorName, DeltaManifest, type DeltaDtype } from "../../../protocol/delta.js";
import { isLanguage } from "../../../protocol/languages.js";
import { serializeSafetensors, type TensorInput } from "../../../protocol/safetensors.js";
import type { LensProbe } from "./probe.js";
import { subspaceEdit } from "./math.js";

export interface SubspaceDeltaRequest {
  /** The target language (BCP-47 primary tag; must be one the probe holds). */
  language: string;
  /** Probed layers to edit. */
  layers: readonly number[];
  lambda: number;
  alpha: number;
  /** Delta id (default: `subspace-<language>-<hash of probe, layers, lambda, alpha>`). */
  id?: string;
  /** Storage dtype (default float32). */
  dtype?: DeltaDtype;
  description?: string;
}

export interface DeltaFile {
  bytes: Uint8Array;
  manifest: DeltaManifest;
}

export function subspaceDelta(probe: LensProbe, request: SubspaceDeltaRequest): DeltaFile {
  const { language, lambda, alpha } = request;
  if (!isLanguage(language)) throw new RangeError(`"${language}" is not a language deltas can be made for`);
  if (!probe.languages.includes(language))
    throw new RangeError(`the probe has no "${language}" (it holds ${probe.languages.join(", ")})`);
  const layers = [...new Set(request.layers)].sort((a, b) => a - b);
  if (layers.length === 0) throw new RangeError("no layers");
  const chosen = layers.map((k) => {
    const l = probe.layers.find((x) => x.layer === k);
    if (!l) throw new RangeError(`layer ${k} was not probed (probed: ${probe.layers.map((x) => x.layer).join(", ")})`);
    return l;
  });
  const rank = Math.max(...chosen.map((l) => l.rank));
  const dtype: DeltaDtype = request.dtype ?? "float32";
  const fileDtype = dtype === "float32" ? "F32" : "F16";
  const d = probe.hiddenSize;

  const tensors = new Map<string, TensorInput>();
  for (const l of chosen) {
    const edit = subspaceEdit(l.M_s, l.rank, l.deltas[language]!, lambda, alpha, rank);
    tensors.set(deltaTensorName(l.layer, "A"), { dtype: fileDtype, shape: [d, rank], data: edit.A });
    tensors.set(deltaTensorName(l.layer, "B"), { dtype: fileDtype, shape: [rank, d], data: edit.B });
    tensors.set(deltaTensorName(l.layer, "b"), { dtype: fileDtype, shape: [d], data: edit.b });
  }
  const id = request.id ?? defaultDeltaId(probe.id, language, layers, lambda, alpha);
  const manifest = DeltaManifest.parse({
    id,
    language,
    kind: "subspace",
    layers,
    rank,
    hidden_size: d,
    dtype,
    base_model: probe.baseModel,
    created_at: new Date().toISOString(),
    method: {
      lambda,
      alpha,
      probe: probe.id,
      central: probe.central,
      probe_languages: probe.languages,
      n_per_language: probe.counts,
      layer_ranks: Object.fromEntries(chosen.map((l) => [String(l.layer), l.rank])),
    },
    ...(request.description !== undefined ? { description: request.description } : {}),
  });
  return { bytes: serializeSafetensors(tensors), manifest };
}

function defaultDeltaId(probeId: string, language: string, layers: number[], lambda: number, alpha: number): string {
  const h = createHash("sha256").update(JSON.stringify({ probeId, language, layers, lambda, alpha })).digest("hex");
  return `subspace-${language}-${h.slice(0, 16)}`;
}
