/**
 * The subspace job's work: the training-free delta a probe gives in closed form
 * (../probe/subspace-delta.ts), loaded into the store on request. Synchronous and short.
 */
import type { SubspaceJobRequest } from "../../../protocol/lens-jobs.js";
import { subspaceDelta } from "../probe/subspace-delta.js";
import { loadDelta, type JobContext, type WorkOutput } from "./work.js";

export function subspaceWork(ctx: JobContext, r: SubspaceJobRequest): WorkOutput {
  const probe = ctx.probe(r.probe);
  const file = subspaceDelta(probe, {
    language: r.language,
    layers: r.layers,
    lambda: r.lambda,
    alpha: r.alpha,
    dtype: r.dtype,
    ...(r.description !== undefined ? { description: r.description } : {}),
  });
  return {
    artifact: { kind: "delta", id: file.manifest.id, tensors: file.bytes, manifest: file.manifest },
    result: {
      delta_id: file.manifest.id,
      probe_id: probe.id,
      language: r.language,
      layers: file.manifest.layers,
      rank: file.manifest.rank,
    },
    after: () => loadDelta(ctx.model, r.load, file),
  };
}
