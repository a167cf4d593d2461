/**
 * Generators for the fuzz tests: malformed variants of valid requests and delta uploads, each with
 * the answers it may get. Runtime-neutral (no Node APIs), so gateway tests (workerd) and backend
 * tests (Node) share it.
 */
import fc from "fast-check";
import { deltaTensorName } from "../../src/protocol/delta.js";
import { rawSafetensors } from "../../dev/make-delta.js";

/** What a case may be answered with: allowed statuses, and for errors the allowed codes. */
export interface Expect {
  status: readonly number[];
  codes?: readonly string[];
}

export const expectBad = (status: number | readonly number[], ...codes: string[]): Expect => ({
  status: typeof status === "number" ? [status] : status,
  ...(codes.length > 0 ? { codes } : {}),
});

export const enc = new TextEncoder();

export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Byte sequences no UTF-8 decoder may accept: stray continuation, truncated lead, overlong, surrogate, past U+10FFFF. */
const INVALID_UTF8: readonly (readonly number[])[] = [
  [0xff],
  [0xfe, 0xfe],
  [0x80],
  [0xbf, 0xbf],
  [0xc3],
  [0xe2, 0x82],
  [0xc0, 0xaf],
  [0xed, 0xa0, 0x80],
  [0xf4, 0x90, 0x80, 0x80],
  [0xf8, 0x88, 0x80, 0x80, 0x80],
];
export const invalidUtf8 = fc.constantFrom(...INVALID_UTF8).map((b) => Uint8Array.from(b));

/** Text with the characters that break naive handling: lone surrogates, controls, NUL, bidi, joiners, astral. */
const oddChar = fc.constantFrom(
  "\u0000",
  "\u0007",
  "\u001b",
  "\ud800",
  "\udfff",
  "\u202e",
  "\u200d",
  "\ufeff",
  "\ufffd",
  "\u{1f600}",
  "\u{10ffff}",
  '"',
  "\\",
  "\n",
  "\r",
);
export const nastyString = (maxLength = 40) =>
  fc.string({ unit: fc.oneof(fc.string({ unit: "binary", minLength: 1, maxLength: 1 }), oddChar), maxLength });

/** JSON text nested `depth` levels deep: [[[...]]] or {"a":{"a":...}}. */
export function deepJson(depth: number, kind: "array" | "object"): string {
  return kind === "array"
    ? `${"[".repeat(depth)}1${"]".repeat(depth)}`
    : `${'{"a":'.repeat(depth)}1${"}".repeat(depth)}`;
}

/** Every proper prefix of a JSON object's text is invalid JSON (its closing brace is missing). */
export const truncation = (text: string) => fc.nat({ max: Math.max(0, text.length - 1) }).map((n) => text.slice(0, n));

/** `obj` as JSON text with `key` given twice: `first`, then `last` (JSON.parse keeps the last). */
export function duplicateKeyJson(obj: Record<string, unknown>, key: string, first: unknown, last: unknown): string {
  const { [key]: _dropped, ...rest } = obj;
  const body = JSON.stringify(rest).slice(1, -1);
  return `{${JSON.stringify(key)}:${JSON.stringify(first)}${body ? `,${body}` : ""},${JSON.stringify(key)}:${JSON.stringify(last)}}`;
}

/** `obj` as JSON text with one field's value written raw (numbers JSON.stringify cannot write: 1e400, -0, NaN). */
export function rawFieldJson(obj: Record<string, unknown>, key: string, raw: string): string {
  const marker = "@@fuzz-raw@@";
  return JSON.stringify({ ...obj, [key]: marker }).replace(JSON.stringify(marker), raw);
}

/**
 * Number tokens as they appear in JSON text, with the value JSON.parse gives (undefined: not JSON).
 * 1e400 parses to Infinity, 1e-400 to 0: values a client cannot mean and a validator must refuse.
 */
export const NUMBER_TOKENS: ReadonlyArray<{ raw: string; value: number | undefined }> = [
  { raw: "1e400", value: Infinity },
  { raw: "-1e400", value: -Infinity },
  { raw: "1e-400", value: 0 },
  { raw: "-0", value: -0 },
  { raw: "9007199254740993", value: 9007199254740992 },
  { raw: "1e21", value: 1e21 },
  { raw: "-1", value: -1 },
  { raw: "0.5", value: 0.5 },
  { raw: "1E0", value: 1 },
  { raw: "NaN", value: undefined },
  { raw: "Infinity", value: undefined },
  { raw: "-Infinity", value: undefined },
  { raw: "0x10", value: undefined },
  { raw: "01", value: undefined },
  { raw: ".5", value: undefined },
  { raw: "1.", value: undefined },
  { raw: "+1", value: undefined },
];

/** Values of the wrong JSON type for a field that wants `want`. */
export function wrongTypeValues(want: "string" | "number" | "integer" | "boolean" | "array" | "object"): unknown[] {
  const all: Record<string, unknown[]> = {
    string: ["x", "", "NaN", "Infinity", "1"],
    number: [1, -1, 0.5, 1e300, -1e300],
    boolean: [true, false],
    array: [[], [1], ["a"], [[]], [null]],
    object: [{}, { a: 1 }, { length: 1 }],
    null: [null],
  };
  const skip = want === "integer" ? "number" : want;
  return Object.entries(all)
    .filter(([k]) => k !== skip)
    .flatMap(([, v]) => v);
}

// ---------------------------------------------------------------------------------------------
// Delta uploads (gateway POST /admin/adapters and backend PUT /internal/v1/deltas/:id)

export interface DeltaBase {
  bytes: Uint8Array<ArrayBuffer>;
  /** The valid manifest, already stored before the fuzz starts. */
  manifest: Record<string, unknown> & {
    id: string;
    layers: number[];
    rank: number;
    hidden_size: number;
    dtype: "float32" | "float16";
  };
  numLayers: number;
  /** Backend only: the store's file cap (loadModel's maxDeltaFileBytes), to go past it. */
  maxFileBytes?: number;
}

/** What the upload routes allow for the manifest field and multipart framing on top of the file cap. */
const MULTIPART_OVERHEAD_BYTES = 1 << 20;

interface MultipartPart {
  name: string;
  filename?: string;
  contentType?: string;
  data: Uint8Array;
}

export interface UploadCase {
  label: string;
  /** The request's content-type; undefined: none at all. */
  contentType: string | undefined;
  body: Uint8Array<ArrayBuffer>;
  expect: Expect;
  /** Gateway only: configuration for this request (e.g. a small MAX_ADAPTER_BYTES). */
  overrides?: Record<string, string>;
  /** Backend only: the id in the path, when not the manifest's. */
  pathId?: string;
}

const BOUNDARY = "----lens-fuzz-7d1e0c9a4b2f";

function multipartBody(parts: readonly MultipartPart[], boundary = BOUNDARY): Uint8Array<ArrayBuffer> {
  const chunks: Uint8Array[] = [];
  for (const p of parts) {
    let head = `--${boundary}\r\nContent-Disposition: form-data; name="${p.name}"`;
    if (p.filename !== undefined) head += `; filename="${p.filename}"`;
    head += "\r\n";
    if (p.contentType !== undefined) head += `Content-Type: ${p.contentType}\r\n`;
    chunks.push(enc.encode(`${head}\r\n`), p.data, enc.encode("\r\n"));
  }
  chunks.push(enc.encode(`--${boundary}--\r\n`));
  return concatBytes(...chunks);
}

const MULTIPART = `multipart/form-data; boundary=${BOUNDARY}`;

const manifestPart = (data: Uint8Array): MultipartPart => ({ name: "manifest", data });
const tensorsPart = (data: Uint8Array): MultipartPart => ({
  name: "tensors",
  filename: "delta.safetensors",
  contentType: "application/octet-stream",
  data,
});

/** Reads the JSON header of a safetensors file and the data section after it. */
function splitSafetensors(bytes: Uint8Array): {
  header: Record<string, Record<string, unknown>>;
  data: Uint8Array;
} {
  const n = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n))) as Record<
    string,
    Record<string, unknown>
  >;
  return { header, data: bytes.subarray(8 + n) };
}

type Target = "gateway" | "backend";

/** What a valid upload is answered with: the gateway already stores this content (200), the backend replaces it (201). */
const validFor = (target: Target): Expect => ({ status: [target === "gateway" ? 200 : 201] });

/**
 * Malformed (and a few valid) variants of a stored delta upload. One mutation per case, so the
 * expected answer is known: the validation code it must fail with, or the valid answer.
 * Variants that are valid and would store something new are not generated (the tests check that
 * nothing new is stored); valid variants with different bytes exist for the gateway only (where
 * the taken delta id refuses them with 409).
 */
export function deltaUploadCase(base: DeltaBase, target: Target): fc.Arbitrary<UploadCase> {
  const m = base.manifest;
  const manifestText = JSON.stringify(m);
  const hidden = m.hidden_size;
  const rank = m.rank;
  const f32 = m.dtype === "float32";
  const elem = f32 ? 4 : 2;
  const { header, data } = splitSafetensors(base.bytes);
  const multipart = (
    label: string,
    manifest: Uint8Array | string,
    tensors: Uint8Array,
    expect: Expect,
    extra: Partial<UploadCase> = {},
  ): UploadCase => ({
    label,
    contentType: MULTIPART,
    body: multipartBody([
      manifestPart(typeof manifest === "string" ? enc.encode(manifest) : manifest),
      tensorsPart(tensors),
    ]),
    expect,
    ...extra,
  });
  const withManifest = (label: string, manifest: unknown, expect: Expect) =>
    multipart(label, typeof manifest === "string" ? manifest : JSON.stringify(manifest), base.bytes, expect);
  const withFile = (label: string, bytes: Uint8Array, expect: Expect) => multipart(label, manifestText, bytes, expect);
  const withHeader = (
    label: string,
    edit: (h: Record<string, Record<string, unknown>>) => void,
    expect: Expect,
    newData?: Uint8Array,
  ) => {
    const h = structuredClone(header);
    edit(h);
    return withFile(label, rawSafetensors(h, newData ?? data), expect);
  };
  const tensorNames = Object.keys(header).filter((k) => k !== "__metadata__");
  const tensorName = fc.constantFrom(...tensorNames);
  const invalidManifest = expectBad(400, "manifest_invalid");
  const badHeader = expectBad(400, "bad_header");

  const REQUIRED = [
    "id",
    "language",
    "kind",
    "layers",
    "rank",
    "hidden_size",
    "dtype",
    "base_model",
    "created_at",
    "method",
  ];
  const WRONG: Record<string, unknown[]> = {
    id: ["", "has space", "a/b", "x".repeat(129), "ü", "..\u0000", 42, null, ["x"]],
    language: ["xx", "EN", "en-US", "", "und", "klingon", 1, null],
    kind: ["lora", "", "Adapter", null, 3],
    layers: [[], [m.layers[0], m.layers[0]], [-1], [1.5], ["2"], "2", null, {}, [null]],
    rank: [0, -1, 1.5, "2", null, hidden + 1, [rank]],
    hidden_size: [0, -hidden, hidden + 0.5, String(hidden), null, Number.POSITIVE_INFINITY],
    dtype: ["bfloat16", "F32", "float64", "", null],
    base_model: [null, "model", [], { id: "x" }, { fingerprint: `sha256:${"ab".repeat(32)}` }],
    created_at: ["yesterday", "2025-13-01T00:00:00Z", "2025-01-01", "", 1700000000, null],
    method: ["x", [], null, 5],
    metrics: [{ a: "1" }, [], { a: null }, "m", { a: true }],
    description: ["x".repeat(4001), 5, null, []],
  };
  const baseModel = m["base_model"] as { id: string; fingerprint: string };

  const manifestCases: fc.Arbitrary<UploadCase>[] = [
    fc.constantFrom(...REQUIRED).map((k) => {
      const { [k]: _gone, ...rest } = m;
      return withManifest(`manifest: ${k} missing`, rest, invalidManifest);
    }),
    fc
      .constantFrom(...Object.keys(WRONG))
      .chain((k) => fc.constantFrom(...WRONG[k]!).map((v) => ({ k, v })))
      .map(({ k, v }) => withManifest(`manifest: ${k} invalid`, { ...m, [k]: v }, invalidManifest)),
    fc
      .oneof(
        fc.constantFrom("hiddenSize", "layer", "Rank", "fingerprint", "extra", "constructor", "toString"),
        fc.string({ minLength: 1, maxLength: 12 }),
      )
      .filter((k) => !Object.hasOwn(m, k) && k !== "metrics" && k !== "description")
      .map((k) => withManifest("manifest: unknown field", { ...m, [k]: 1 }, invalidManifest)),
    fc.constant(
      withManifest("manifest: __proto__ field", manifestText.replace("{", '{"__proto__":{"rank":1},'), invalidManifest),
    ),
    fc
      .constantFrom<unknown>(
        { ...baseModel, extra: 1 },
        { ...baseModel, id: "" },
        { ...baseModel, fingerprint: "sha256:XYZ" },
        { ...baseModel, fingerprint: baseModel.fingerprint.toUpperCase() },
        { ...baseModel, fingerprint: baseModel.fingerprint.slice(7) },
      )
      .map((b) => withManifest("manifest: base_model invalid", { ...m, base_model: b }, invalidManifest)),
    fc
      .stringMatching(/^[0-9a-f]{64}$/)
      .filter((hex) => `sha256:${hex}` !== baseModel.fingerprint)
      .map((hex) =>
        withManifest(
          "manifest: another model's fingerprint",
          { ...m, base_model: { ...baseModel, fingerprint: `sha256:${hex}` } },
          expectBad(409, "fingerprint_mismatch"),
        ),
      ),
    fc
      .integer({ min: hidden + 1, max: 1 << 20 })
      .map((h) =>
        withManifest(
          "manifest: another hidden size",
          { ...m, hidden_size: h },
          target === "gateway" ? expectBad(400, "bad_shape") : expectBad([400, 413], "bad_shape", "too_large"),
        ),
      ),
    fc
      .integer({ min: base.numLayers, max: 2 ** 31 })
      .map((l) =>
        withManifest(
          "manifest: layer out of range",
          { ...m, layers: [...m.layers, l] },
          expectBad(400, "layer_out_of_range"),
        ),
      ),
    fc.constant(
      withManifest(
        "manifest: fewer layers than the file",
        { ...m, layers: m.layers.slice(0, -1) },
        expectBad(400, "unexpected_tensor"),
      ),
    ),
    fc
      .integer({ min: 0, max: base.numLayers - 1 })
      .filter((l) => !m.layers.includes(l))
      .map((l) =>
        withManifest(
          "manifest: more layers than the file",
          { ...m, layers: [...m.layers, l] },
          expectBad(400, "missing_tensor"),
        ),
      ),
    fc
      .integer({ min: 1, max: hidden })
      .filter((r) => r !== rank)
      .map((r) => withManifest("manifest: another rank", { ...m, rank: r }, expectBad(400, "bad_shape"))),
    fc.constant(
      withManifest(
        "manifest: the other dtype",
        { ...m, dtype: f32 ? "float16" : "float32" },
        expectBad(400, "bad_dtype"),
      ),
    ),
    truncation(manifestText).map((t) => withManifest("manifest: truncated JSON", t, invalidManifest)),
    fc
      .constantFrom("[]", "null", '"manifest"', "42", "true", "", " ", "{}", `[${manifestText}]`)
      .map((t) => withManifest("manifest: not an object", t, invalidManifest)),
    fc
      .tuple(fc.integer({ min: 1000, max: 30000 }), fc.constantFrom<"array" | "object">("array", "object"))
      .map(([depth, kind]) =>
        withManifest(
          "manifest: deeply nested method",
          manifestText.replace(/"method":\{/, `"method":{"deep":${deepJson(depth, kind)},`),
          invalidManifest,
        ),
      ),
    fc
      .constantFrom("rank", "hidden_size", "dtype", "language", "id")
      .chain((k) => fc.constantFrom(...WRONG[k]!).map((v) => ({ k, v })))
      .map(({ k, v }) =>
        withManifest("manifest: duplicate key, the last invalid", duplicateKeyJson(m, k, m[k], v), invalidManifest),
      ),
    fc
      .tuple(fc.constantFrom("id", "language", "kind", "dtype"), fc.integer({ min: 0, max: 4 }))
      .map(([k, junk]) =>
        withManifest(
          "manifest: duplicate key, the last valid",
          duplicateKeyJson(m, k, WRONG[k]![junk % WRONG[k]!.length], m[k]),
          validFor(target),
        ),
      ),
    fc.tuple(fc.constantFrom("rank", "hidden_size"), fc.constantFrom(...NUMBER_TOKENS)).map(([k, tok]) => {
      const expect =
        tok.value === undefined
          ? invalidManifest
          : tok.value === m[k]
            ? validFor(target)
            : expectBad([400, 413], "manifest_invalid", "bad_shape", "too_large");
      return withManifest(`manifest: raw number ${tok.raw}`, rawFieldJson(m, k, tok.raw), expect);
    }),
    invalidUtf8.map((bad) => {
      // In place of the opening quote of a key: the text cannot be JSON whatever the decoder makes of it.
      const text = enc.encode(manifestText);
      const at = manifestText.indexOf('"rank"');
      return multipart(
        "manifest: invalid UTF-8 in the syntax",
        concatBytes(text.subarray(0, at), bad, text.subarray(at + 1)),
        base.bytes,
        invalidManifest,
      );
    }),
  ];
  if (target === "gateway") {
    // Valid manifests for the same file: the stored row is answered (200), nothing new is kept.
    manifestCases.push(
      fc
        .record({
          description: fc.option(nastyString(60), { nil: undefined }),
          kind: fc.constantFrom("subspace", "adapter"),
          created_at: fc.constantFrom(
            "2020-02-29T23:59:59Z",
            "2025-06-01T12:00:00.123+02:00",
            "2030-01-01T00:00:00.000Z",
          ),
          layers: fc.shuffledSubarray(m.layers, { minLength: m.layers.length, maxLength: m.layers.length }),
        })
        .map((v) => {
          const { description, ...rest } = v;
          return withManifest(
            "valid: another manifest for the stored file",
            { ...m, ...rest, ...(description !== undefined ? { description } : {}) },
            { status: [200] },
          );
        }),
      invalidUtf8.map((bad) => {
        // Inside a string value: decoders replace it with U+FFFD, the manifest stays valid.
        const withDesc = JSON.stringify({ ...m, description: "before-after" });
        const text = enc.encode(withDesc);
        const at = withDesc.indexOf("before-") + "before-".length;
        return multipart(
          "valid: invalid UTF-8 inside a string",
          concatBytes(text.subarray(0, at), bad, text.subarray(at)),
          base.bytes,
          { status: [200] },
        );
      }),
    );
  }

  const nonFinite = f32 ? [Number.NaN, Infinity, -Infinity] : [0x7e00, 0x7c00, 0xfc00, 0x7c01];
  const fileCases: fc.Arbitrary<UploadCase>[] = [
    fc
      .nat({ max: base.bytes.byteLength - 1 })
      .map((n) => withFile("file: truncated", base.bytes.slice(0, n), badHeader)),
    fc.constantFrom(0, 1, 7).map((n) => withFile("file: shorter than 8 bytes", base.bytes.slice(0, n), badHeader)),
    fc.integer({ min: base.bytes.byteLength - 7, max: 2 ** 32 - 1 }).map((n) => {
      const b = base.bytes.slice();
      new DataView(b.buffer).setUint32(0, n, true);
      return withFile("file: header length past the end", b, badHeader);
    }),
    fc.integer({ min: 1, max: 2 ** 32 - 1 }).map((hi) => {
      const b = base.bytes.slice();
      new DataView(b.buffer).setUint32(4, hi, true);
      return withFile("file: 64-bit header length", b, badHeader);
    }),
    fc.integer({ min: 0, max: 7 }).map((k) => {
      const b = base.bytes.slice();
      const v = new DataView(b.buffer);
      v.setUint32(0, v.getUint32(0, true) - 1 - k, true);
      return withFile("file: header length too short", b, badHeader);
    }),
    fc
      .constantFrom(
        "",
        "[]",
        "null",
        " {}",
        "{",
        '{"a":',
        "\u0000{}",
        '{"layers.2.A":1}',
        '{"__metadata__":[]}',
        '{"__metadata__":{"a":1}}',
        '{"":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}',
      )
      .map((h) => withFile("file: header not a tensor map", rawSafetensors(h, data), badHeader)),
    invalidUtf8.map((bad) => {
      const text = JSON.stringify(header);
      const at = text.indexOf("dtype");
      const h = concatBytes(enc.encode(text.slice(0, at)), bad, enc.encode(text.slice(at)));
      const out = concatBytes(new Uint8Array(8), h, data);
      new DataView(out.buffer).setUint32(0, h.byteLength, true);
      return withFile("file: invalid UTF-8 in the header", out, badHeader);
    }),
    fc
      .tuple(tensorName, fc.constantFrom("BF16", "I32", "F64", "U8", "f32", "float32", "BOOL"))
      .map(([name, dt]) =>
        withHeader("file: unsupported dtype", (h) => (h[name]!["dtype"] = dt), expectBad(400, "bad_dtype")),
      ),
    fc
      .tuple(tensorName, fc.constantFrom<unknown>(12, null, [], {}, true))
      .map(([name, dt]) => withHeader("file: dtype not a string", (h) => (h[name]!["dtype"] = dt), badHeader)),
    tensorName.map((name) =>
      withHeader("file: the other float dtype", (h) => (h[name]!["dtype"] = f32 ? "F16" : "F32"), badHeader),
    ),
    fc
      .constantFrom(...m.layers)
      .chain((l) =>
        fc.constantFrom<[string, number[]]>(
          [deltaTensorName(l, "A"), [rank, hidden]],
          [deltaTensorName(l, "A"), [hidden * rank]],
          [deltaTensorName(l, "B"), [hidden, rank]],
          [deltaTensorName(l, "b"), [1, hidden]],
          [deltaTensorName(l, "A"), [hidden, rank, 1]],
        ),
      )
      .map(([name, shape]) =>
        withHeader("file: shape not the manifest's", (h) => (h[name]!["shape"] = shape), expectBad(400, "bad_shape")),
      ),
    fc
      .tuple(
        tensorName,
        fc.constantFrom<unknown>(
          [-1, 2],
          [1.5],
          ["8"],
          "8",
          null,
          [2 ** 53],
          [Number.POSITIVE_INFINITY],
          {},
          [hidden, rank * 2],
          [],
        ),
      )
      .map(([name, shape]) =>
        withHeader("file: shape invalid or of another size", (h) => (h[name]!["shape"] = shape), badHeader),
      ),
    fc
      .tuple(
        tensorName,
        fc.constantFrom<(o: number[]) => unknown>(
          ([b, e]) => [e, b],
          ([b, e]) => [b! + elem, e! + elem],
          ([b, e]) => [b! - elem, e! - elem],
          ([b]) => [b, data.byteLength + elem],
          ([b, e]) => [b, e, e],
          ([b]) => [b],
          ([b, e]) => [String(b), e],
          ([b, e]) => [b! + 0.5, e],
          ([b, e]) => [-b! - 1, e],
          () => [0, 2 ** 53],
          () => null,
        ),
      )
      .map(([name, edit]) =>
        withHeader(
          "file: data_offsets wrong",
          (h) => (h[name]!["data_offsets"] = edit(h[name]!["data_offsets"] as number[])),
          badHeader,
        ),
      ),
    fc
      .tuple(tensorName, tensorName)
      .filter(([a, b]) => a !== b)
      .map(([a, b]) =>
        withHeader(
          "file: two tensors on the same bytes",
          (h) => (h[a]!["data_offsets"] = h[b]!["data_offsets"]),
          badHeader,
        ),
      ),
    fc
      .nat({ max: 64 })
      .map((extra) => withFile("file: trailing bytes", concatBytes(base.bytes, new Uint8Array(extra + 1)), badHeader)),
    tensorName.map((name) =>
      withHeader("file: tensor entry with an unknown field", (h) => (h[name]!["offset"] = 0), badHeader),
    ),
    tensorName.map((name) =>
      withHeader("file: a tensor's entry gone, its bytes left", (h) => delete h[name], badHeader),
    ),
    tensorName.map((name) => {
      // Drop the entry and its bytes, re-pointing the rest: a well-formed file one tensor short.
      const [b, e] = header[name]!["data_offsets"] as [number, number];
      const size = e - b;
      return withHeader(
        "file: a tensor missing",
        (h) => {
          delete h[name];
          for (const t of Object.values(h)) {
            const o = t["data_offsets"] as [number, number] | undefined;
            if (o && o[0] >= e) t["data_offsets"] = [o[0] - size, o[1] - size];
          }
        },
        expectBad(400, "missing_tensor"),
        concatBytes(data.subarray(0, b), data.subarray(e)),
      );
    }),
    fc
      .constantFrom(
        "layers.9.A",
        `layers.${base.numLayers}.b`,
        "layers.2.C",
        "lm_head.weight",
        "__metadata",
        "layers.02.A",
      )
      .map((extraName) =>
        withHeader(
          "file: a tensor the manifest does not name",
          (h) =>
            (h[extraName] = {
              dtype: f32 ? "F32" : "F16",
              shape: [2],
              data_offsets: [data.byteLength, data.byteLength + 2 * elem],
            }),
          expectBad(400, "unexpected_tensor"),
          concatBytes(data, new Uint8Array(2 * elem)),
        ),
      ),
    fc.tuple(fc.nat({ max: data.byteLength / elem - 1 }), fc.constantFrom(...nonFinite)).map(([i, v]) => {
      const b = base.bytes.slice();
      const view = new DataView(b.buffer, b.byteLength - data.byteLength);
      if (f32) view.setFloat32(i * 4, v, true);
      else view.setUint16(i * 2, v, true);
      return withFile("file: a non-finite value", b, expectBad(400, "non_finite"));
    }),
    fc.constant(withFile("file: empty header, no data", rawSafetensors({}), expectBad(400, "missing_tensor"))),
    fc.uint8Array({ minLength: 0, maxLength: 256 }).map((junk) => withFile("file: random bytes", junk, badHeader)),
  ];
  if (target === "gateway") {
    // Valid files with other bytes under the stored delta id: refused, the id is taken.
    const taken = expectBad(409, "delta_id_taken");
    fileCases.push(
      fc.tuple(fc.nat({ max: data.byteLength - 1 }), fc.integer({ min: 1, max: 255 })).map(([i, x]) => {
        const b = base.bytes.slice();
        b[b.byteLength - data.byteLength + i]! ^= x;
        return withFile("file: data bytes flipped", b, { status: [400, 409], codes: ["non_finite", "delta_id_taken"] });
      }),
      fc
        .dictionary(fc.string({ maxLength: 8 }), nastyString(16), { maxKeys: 3 })
        .map((meta) => withHeader("valid file, other bytes: metadata added", (h) => (h["__metadata__"] = meta), taken)),
      fc.constant(rawSafetensors(header, data)).map((b) =>
        // When the header needed no padding the bytes are the stored file's: answered with its row.
        withFile(
          "valid file, other bytes: unpadded header",
          b,
          b.byteLength === base.bytes.byteLength && b.every((x, i) => x === base.bytes[i]) ? { status: [200] } : taken,
        ),
      ),
      fc.constant({
        ...withFile("over the size limit", base.bytes, expectBad(413, "too_large")),
        overrides: { MAX_ADAPTER_BYTES: String(base.bytes.byteLength - 1) },
      }),
      fc.integer({ min: 1, max: 4096 }).map((extra) => ({
        // Past the file cap and the multipart allowance: refused while the body is read.
        ...withFile(
          "body over the upload limit",
          concatBytes(base.bytes, new Uint8Array(MULTIPART_OVERHEAD_BYTES + extra)),
          expectBad(413, "too_large"),
        ),
        overrides: { MAX_ADAPTER_BYTES: String(base.bytes.byteLength) },
      })),
    );
  } else if (base.maxFileBytes !== undefined) {
    const cap = base.maxFileBytes;
    fileCases.push(
      fc
        .integer({ min: 1, max: 4096 })
        .map((extra) =>
          withFile(
            "file over the size limit",
            concatBytes(base.bytes, new Uint8Array(cap - base.bytes.byteLength + extra)),
            expectBad(413, "too_large"),
          ),
        ),
      fc
        .integer({ min: 1, max: 4096 })
        .map((extra) =>
          withFile(
            "body over the upload limit",
            new Uint8Array(cap + MULTIPART_OVERHEAD_BYTES + extra),
            expectBad(413, "too_large"),
          ),
        ),
    );
  }

  const requestCases: fc.Arbitrary<UploadCase>[] = [
    fc.constant({
      label: "multipart: manifest part missing",
      contentType: MULTIPART,
      body: multipartBody([tensorsPart(base.bytes)]),
      expect: expectBad(400, "bad_request"),
    }),
    fc.constant({
      label: "multipart: tensors part missing",
      contentType: MULTIPART,
      body: multipartBody([manifestPart(enc.encode(manifestText))]),
      expect: expectBad(400, "bad_request"),
    }),
    fc.constant({
      label: "multipart: no parts",
      contentType: MULTIPART,
      body: multipartBody([]),
      expect: expectBad(400, "bad_request"),
    }),
    fc.constant({
      label: "multipart: tensors as a text field",
      contentType: MULTIPART,
      body: multipartBody([manifestPart(enc.encode(manifestText)), { name: "tensors", data: enc.encode("AAAA") }]),
      expect: expectBad(400, "bad_request"),
    }),
    fc.constant({
      label: "multipart: manifest as a file",
      contentType: MULTIPART,
      body: multipartBody([
        {
          name: "manifest",
          filename: "manifest.json",
          contentType: "application/json",
          data: enc.encode(manifestText),
        },
        tensorsPart(base.bytes),
      ]),
      expect: expectBad(400, "bad_request"),
    }),
    fc.constantFrom("Manifest", "manifest ", "tensor", "files", "").map((name) => ({
      label: "multipart: misnamed part",
      contentType: MULTIPART,
      body: multipartBody([{ name, data: enc.encode(manifestText) }, tensorsPart(base.bytes)]),
      expect: expectBad(400, "bad_request"),
    })),
    fc.boolean().map((validFirst) => ({
      label: "multipart: manifest twice",
      contentType: MULTIPART,
      body: multipartBody([
        manifestPart(enc.encode(validFirst ? manifestText : "{oops")),
        manifestPart(enc.encode(validFirst ? "{oops" : manifestText)),
        tensorsPart(base.bytes),
      ]),
      // The first part named manifest is the one read.
      expect: validFirst ? validFor(target) : invalidManifest,
    })),
    fc
      .constantFrom(
        undefined,
        "application/json",
        "text/plain",
        "application/octet-stream",
        `multipart/mixed; boundary=${BOUNDARY}`,
        "application/x-www-form-urlencoded",
        "form-data",
      )
      .map((contentType) => ({
        label: "request: not multipart/form-data",
        contentType,
        body: multipartBody([manifestPart(enc.encode(manifestText)), tensorsPart(base.bytes)]),
        expect: expectBad(400, "bad_request"),
      })),
    fc
      .constantFrom(
        "multipart/form-data",
        "multipart/form-data; boundary=",
        "multipart/form-data; boundary=other-boundary",
        'multipart/form-data; boundary="unterminated',
      )
      .map((contentType) => ({
        label: "request: multipart without its boundary",
        contentType,
        body: multipartBody([manifestPart(enc.encode(manifestText)), tensorsPart(base.bytes)]),
        expect: expectBad(400, "bad_request"),
      })),
    fc
      .oneof(fc.constant(new Uint8Array(0)), fc.uint8Array({ maxLength: 300 }), fc.constant(enc.encode(manifestText)))
      .map((body) => ({
        label: "request: body not multipart",
        contentType: MULTIPART,
        body: body as Uint8Array<ArrayBuffer>,
        expect: expectBad(400, "bad_request"),
      })),
    fc.integer({ min: 1, max: 200 }).map((k) => {
      // Cut inside the closing delimiter or the tensors part: a lenient parser may still find a
      // complete file when only the delimiter's tail is gone, so the valid answer is allowed too.
      const full = multipartBody([manifestPart(enc.encode(manifestText)), tensorsPart(base.bytes)]);
      return {
        label: "request: multipart body cut short",
        contentType: MULTIPART,
        body: full.slice(0, full.byteLength - k),
        expect: { status: [400, ...validFor(target).status] },
      };
    }),
  ];

  const valid = fc.constant(withManifest("valid: the stored upload again", manifestText, validFor(target)));

  const all = [...manifestCases, ...fileCases, ...requestCases];
  if (target === "backend") {
    all.push(
      fc
        .constantFrom("has%20space", "x".repeat(129), "a%2Fb", "%ZZ", "%", "%00", "%E2%82", "%C3%BC", "a:b", "*")
        .map((pathId) => ({
          ...withManifest("path: invalid delta id", manifestText, expectBad(400, "bad_request")),
          pathId,
        })),
      fc
        .stringMatching(/^[A-Za-z0-9._-]{1,128}$/)
        // "." and ".." are path segments a URL resolves away, and ids of only dots are refused.
        .filter((id) => id !== m.id && !/^\.+$/.test(id))
        .map((pathId) => ({
          ...withManifest("path: id differs from manifest.id", manifestText, expectBad(400, "id_mismatch")),
          pathId,
        })),
    );
  }
  return fc.oneof({ arbitrary: valid, weight: 2 }, ...all.map((arbitrary) => ({ arbitrary, weight: 1 })));
}
