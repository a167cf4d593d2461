/**
 * The delta: the one kind of edit the backend applies. At each layer k in `manifest.layers`,
 * on the residual stream,
 *
 *   h' = h + (h A) B + b        A: [hidden, rank], B: [rank, hidden], b: [hidden]
 *
 * stored as a safetensors file (tensors `layers.{k}.A`, `layers.{k}.B`, `layers.{k}.b`, nothing
 * else; row-major, F32 or F16 as the manifest says) plus a JSON manifest.
 *
 * Shared by the gateway (validates uploads in workerd) and the backend (validates again before
 * holding a delta), so this file uses no Node APIs.
 */
import { z } from "zod";
import { LANGUAGES } from "./languages.js";
import { parseSafetensors, SafetensorsError, tensorToFloat32, type TensorView } from "./safetensors.js";

/** Where the backend mounts the delta routes (see src/gpu-backend/deltas/routes.ts). */
export const DELTAS_PATH = "/internal/v1/deltas";

// Not only dots: ids travel in URL paths (the gateway PUTs to /internal/v1/deltas/<id>), where
// "." and ".." are resolved away, and such names are special on every file system.
export const DeltaId = z
  .string()
  .regex(/^(?!\.+$)[A-Za-z0-9._-]{1,128}$/, "id must be 1-128 of A-Z a-z 0-9 . _ -, not only dots");

export const Fingerprint = z.string().regex(/^sha256:[0-9a-f]{64}$/, "fingerprint must be sha256:<64 lowercase hex>");

export const DeltaManifest = z
  .object({
    id: DeltaId,
    /** BCP-47 primary tag of the language the delta is for. */
    language: z.enum(LANGUAGES),
    /**
     * How the delta was made. "subspace": closed form from the probe (A = M_s, B = -lambda M_s^T,
     * b = alpha Delta). "adapter": trained with the Lens losses (the stored name of a trained delta,
     * kept because manifests already say it; in the gateway an "adapter" is any delta an operator
     * registered, of either kind).
     */
    kind: z.enum(["subspace", "adapter"]),
    layers: z
      .array(z.number().int().nonnegative())
      .min(1)
      .refine((ls) => new Set(ls).size === ls.length, "layers must be distinct"),
    rank: z.number().int().positive(),
    hidden_size: z.number().int().positive(),
    /** Storage dtype of every tensor in the file; the backend always computes in float32. */
    dtype: z.enum(["float32", "float16"]),
    base_model: z.object({ id: z.string().min(1), fingerprint: Fingerprint }).strict(),
    created_at: z.iso.datetime({ offset: true }),
    /** How it was made (lambda, alpha, steps, lr, prompt counts, ...): recorded, never interpreted. */
    method: z.record(z.string(), z.json()),
    metrics: z.record(z.string(), z.number()).optional(),
    description: z.string().max(4000).optional(),
  })
  // Strict: a misspelt field ("hiddenSize") is an error, not silently dropped.
  .strict()
  .refine((m) => m.rank <= m.hidden_size, { message: "rank must not exceed hidden_size", path: ["rank"] });
export type DeltaManifest = z.infer<typeof DeltaManifest>;

export type DeltaDtype = DeltaManifest["dtype"];

/** Codes validateDelta answers with. */
export const DeltaValidationCode = z.enum([
  "too_large",
  "bad_header",
  "bad_dtype",
  "bad_shape",
  "missing_tensor",
  "unexpected_tensor",
  "non_finite",
  "fingerprint_mismatch",
  "layer_out_of_range",
  "manifest_invalid",
]);
export type DeltaValidationCode = z.infer<typeof DeltaValidationCode>;

/** Codes of the delta HTTP routes: the validation codes plus request-level ones. */
export const DeltaApiErrorCode = z.enum([
  ...DeltaValidationCode.options,
  /** The path id and manifest.id differ. */
  "id_mismatch",
  /** Not multipart, a field missing, or an invalid id in the path. */
  "bad_request",
  "not_found",
]);
export type DeltaApiErrorCode = z.infer<typeof DeltaApiErrorCode>;

export const DeltaErrorBody = z.object({
  error: z.object({ code: DeltaApiErrorCode, message: z.string() }),
});
export type DeltaErrorBody = z.infer<typeof DeltaErrorBody>;

export interface DeltaError {
  code: DeltaValidationCode;
  message: string;
}

export type DeltaPart = "A" | "B" | "b";

export function deltaTensorName(layer: number, part: DeltaPart): string {
  return `layers.${layer}.${part}`;
}

/** One layer's edit, in float32, row-major: A[i * rank + j], B[j * hidden + i]. */
export interface DeltaLayer {
  A: Float32Array;
  B: Float32Array;
  b: Float32Array;
  rank: number;
}

export interface DecodedDelta {
  manifest: DeltaManifest;
  layers: Map<number, DeltaLayer>;
}

export type ValidateDeltaResult = { ok: true; delta: DecodedDelta } | { ok: false; error: DeltaError };

export interface DeltaExpectations {
  /** The loaded base model's fingerprint. */
  fingerprint: string;
  hiddenSize: number;
  numLayers: number;
  /** Cap on the safetensors file size. */
  maxBytes: number;
}

/** Bytes a delta takes once decoded to float32: what the backend's store budgets. */
export function decodedDeltaBytes(m: Pick<DeltaManifest, "layers" | "rank" | "hidden_size">): number {
  return m.layers.length * (2 * m.hidden_size * m.rank + m.hidden_size) * 4;
}

function err(code: DeltaValidationCode, message: string): { ok: false; error: DeltaError } {
  return { ok: false, error: { code, message } };
}

function describeIssues(e: z.ZodError): string {
  return e.issues
    .slice(0, 5)
    .map((i) => `${i.path.length > 0 ? i.path.join(".") : "manifest"}: ${i.message}`)
    .join("; ");
}

/** Deepest nesting a manifest may have; real ones are 3 or 4 levels deep. */
const MAX_MANIFEST_DEPTH = 32;

/** Whether a JSON value nests deeper than `max` (iterative: it must not itself run out of stack). */
function nestsDeeperThan(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== "object" || v === null) continue;
    if (depth > max) return true;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return false;
}

/** Parse a manifest alone, with the same "manifest_invalid" wording validateDelta uses. */
export function parseDeltaManifest(
  input: unknown,
): { ok: true; manifest: DeltaManifest } | { ok: false; error: DeltaError } {
  // z.json() (for `method`) recurses once per level: a manifest nested a few thousand levels deep
  // overflowed the stack inside safeParse, a 500 on both the gateway and the backend upload routes.
  if (nestsDeeperThan(input, MAX_MANIFEST_DEPTH)) {
    return err("manifest_invalid", `manifest: nested deeper than ${MAX_MANIFEST_DEPTH} levels`);
  }
  const r = DeltaManifest.safeParse(input);
  return r.success ? { ok: true, manifest: r.data } : err("manifest_invalid", describeIssues(r.error));
}

/**
 * Check a delta file against its manifest and the loaded model, and decode it to float32.
 * Nothing is trusted: size, header, dtype, tensor names, shapes, layer range, finiteness and the
 * base-model fingerprint are all checked, and the first failure is reported with its code.
 */
export function validateDelta(
  bytes: Uint8Array,
  manifestInput: unknown,
  expect: DeltaExpectations,
): ValidateDeltaResult {
  if (bytes.byteLength > expect.maxBytes) {
    return err("too_large", `file is ${bytes.byteLength} bytes, over the ${expect.maxBytes}-byte limit`);
  }
  const parsedManifest = parseDeltaManifest(manifestInput);
  if (!parsedManifest.ok) return parsedManifest;
  const manifest = parsedManifest.manifest;

  if (manifest.base_model.fingerprint !== expect.fingerprint) {
    return err(
      "fingerprint_mismatch",
      `delta was made for ${manifest.base_model.fingerprint}, the loaded model is ${expect.fingerprint}`,
    );
  }
  if (manifest.hidden_size !== expect.hiddenSize) {
    return err(
      "bad_shape",
      `manifest hidden_size ${manifest.hidden_size} differs from the model's ${expect.hiddenSize}`,
    );
  }
  const outOfRange = manifest.layers.find((l) => l >= expect.numLayers);
  if (outOfRange !== undefined) {
    return err(
      "layer_out_of_range",
      `layer ${outOfRange} is out of range: the model has layers 0..${expect.numLayers - 1}`,
    );
  }

  let tensors: Map<string, TensorView>;
  try {
    tensors = parseSafetensors(bytes).tensors;
  } catch (e) {
    if (e instanceof SafetensorsError) return err(e.code, e.message);
    throw e;
  }

  const fileDtype = manifest.dtype === "float32" ? "F32" : "F16";
  const hidden = manifest.hidden_size;
  const rank = manifest.rank;
  const expectedShapes = new Map<string, number[]>();
  for (const l of manifest.layers) {
    expectedShapes.set(deltaTensorName(l, "A"), [hidden, rank]);
    expectedShapes.set(deltaTensorName(l, "B"), [rank, hidden]);
    expectedShapes.set(deltaTensorName(l, "b"), [hidden]);
  }
  for (const name of tensors.keys()) {
    if (!expectedShapes.has(name)) {
      return err(
        "unexpected_tensor",
        `tensor "${name}" is not one of layers.{k}.A/B/b for the manifest's layers [${manifest.layers.join(", ")}]`,
      );
    }
  }
  for (const [name, shape] of expectedShapes) {
    const t = tensors.get(name);
    if (t === undefined) return err("missing_tensor", `tensor "${name}" is missing`);
    if (t.dtype !== fileDtype) {
      return err("bad_dtype", `tensor "${name}" is ${t.dtype}, the manifest says ${manifest.dtype}`);
    }
    if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      return err("bad_shape", `tensor "${name}" has shape [${t.shape.join(", ")}], expected [${shape.join(", ")}]`);
    }
  }

  const layers = new Map<number, DeltaLayer>();
  for (const l of manifest.layers) {
    const decoded: Partial<Record<DeltaPart, Float32Array>> = {};
    for (const part of ["A", "B", "b"] as const) {
      const name = deltaTensorName(l, part);
      const values = tensorToFloat32(tensors.get(name)!);
      for (let i = 0; i < values.length; i++) {
        // v - v is NaN for NaN and +-Infinity, 0 for every finite value.
        if (values[i]! - values[i]! !== 0) {
          return err("non_finite", `tensor "${name}" has a non-finite value (${values[i]}) at element ${i}`);
        }
      }
      decoded[part] = values;
    }
    layers.set(l, { A: decoded.A!, B: decoded.B!, b: decoded.b!, rank });
  }
  return { ok: true, delta: { manifest, layers } };
}
