/**
 * A trained delta (train.ts) as a delta file: safetensors `layers.{k}.A/B/b` plus a manifest of kind
 * "adapter" that records every setting the result depends on, the probe it used, and its losses at the
 * start and at the end (the end as evaluated on the float32 values the file holds).
 */
import { createHash } from "node:crypto";
import { deltaTensorName, DeltaManifest, type DeltaDtype } from "../../../protocol/delta.js";
import { serializeSafetensors, type TensorInput } from "../../../protocol/safetensors.js";
import type { LossValues } from "./losses.js";
import type { DeltaFile } from "../probe/subspace-delta.js";
import type { TrainedDelta } from "./train.js";

export interface TrainedDeltaRequest {
  /** Delta id (default: `adapter-<language>-<hash of the tensors and settings>`). */
  id?: string;
  /** Storage dtype (default float32: the values as trained). */
  dtype?: DeltaDtype;
  description?: string;
}

export function trainedDeltaFile(t: TrainedDelta, request: TrainedDeltaRequest = {}): DeltaFile {
  const d = t.hiddenSize;
  const { rank } = t;
  const dtype: DeltaDtype = request.dtype ?? "float32";
  const fileDtype = dtype === "float32" ? "F32" : "F16";
  const tensors = new Map<string, TensorInput>([
    [deltaTensorName(t.layer, "A"), { dtype: fileDtype, shape: [d, rank], data: t.A }],
    [deltaTensorName(t.layer, "B"), { dtype: fileDtype, shape: [rank, d], data: t.B }],
    [deltaTensorName(t.layer, "b"), { dtype: fileDtype, shape: [d], data: t.b }],
  ]);
  const bytes = serializeSafetensors(tensors);
  const s = t.settings;
  const method = {
    trainer: "lens-adapter/1",
    probe: t.probeId,
    central: t.central,
    layer: t.layer,
    prompts: t.prompts,
    rank: s.rank,
    steps: s.steps,
    lr: s.lr,
    schedule: s.schedule,
    optimizer: { name: "adam", ...s.adam },
    w_r: s.w_r,
    w_a: s.w_a,
    alpha: s.alpha,
    seed: s.seed,
    init: s.init,
    losses_initial: lossRecord(t.losses[0]!),
    losses_final: lossRecord(t.losses[t.losses.length - 1]!),
  };
  const id =
    request.id ??
    `adapter-${t.language}-${createHash("sha256").update(bytes).update(JSON.stringify(method)).digest("hex").slice(0, 16)}`;
  const final = t.losses[t.losses.length - 1]!;
  const manifest = DeltaManifest.parse({
    id,
    language: t.language,
    kind: "adapter",
    layers: [t.layer],
    rank,
    hidden_size: d,
    dtype,
    base_model: t.baseModel,
    created_at: new Date().toISOString(),
    method,
    metrics: {
      loss_total: final.total,
      loss_retain: final.retain,
      loss_push: final.push,
      loss_align: final.align,
      loss_initial_total: t.losses[0]!.total,
    },
    ...(request.description !== undefined ? { description: request.description } : {}),
  });
  return { bytes, manifest };
}

function lossRecord(l: LossValues) {
  return { total: l.total, retain: l.retain, push: l.push, align: l.align, mse: { ...l.mse } };
}
