/**
 * Trained Lens deltas: one delta h' = h + (h A) B + b per target language at the model's LAST decoder
 * layer, learned with the Lens losses (docs/design.md, "Lens, exactly"; losses.ts) by full-batch Adam.
 *
 * Why only the last layer: there the edited state is an affine function of the unedited one, so the
 * unedited states are read once (states.ts) and every step is closed-form arithmetic on them, with
 * no backpropagation through the model. Editing a lower layer would change every state above it, which
 * needs the model's own gradients (not available from an inference session).
 *
 * The edit is of the model: during training it applies to the central language's prompts and to the
 * target's alike (as in Lens), so the retain term is what keeps English as it was.
 *
 * Hyperparameters. The reference trains model weights for 25 AdamW steps at lr 1e-5. The parameters
 * here are different: a fresh low-rank edit whose useful size is set by the hidden states (B and b must
 * reach the scale of alpha Delta_l and of the states themselves), so steps and lr are our own; the
 * defaults and the measurements behind them are at DEFAULTS below.
 *
 * Determinism: states come from fixed batches, the start from a seeded generator (init.ts), and
 * the steps are plain float64 arithmetic in a fixed order, so the same seed and data give the same delta
 * bit for bit (on one machine and Node version; onnxruntime may round differently elsewhere).
 */
import { isLanguage } from "../../../protocol/languages.js";
import { ChatTokenizer } from "../../model/chat-tokenizer.js";
import { modelFingerprint } from "../../model/fingerprint.js";
import { readModelDir } from "../../model/model-dir.js";
import type { HiddenStateCollector, LoadedModel } from "../hidden-states.js";
import { lensLoss, type EditParams, type LensLossProblem, type LossValues } from "./losses.js";
import type { LensProbe, ProbeLayer } from "../probe/probe.js";
import { Adam, ADAM_DEFAULTS, learningRate, type AdamOptions, type LrSchedule } from "./adam.js";
import { initialParams, type EditInit } from "./init.js";
import { PositionStateReader, type PromptStates } from "./states.js";
import type * as ort from "onnxruntime-node";

/** Settings that decide the result (recorded in the delta's manifest). */
export interface TrainSettings {
  rank: number;
  steps: number;
  lr: number;
  /** Weight of the retain term (the design notes' w_r). */
  w_r: number;
  /** Weight of the align term (the design notes' w_a). */
  w_a: number;
  /** The push term's target is alpha * Delta_l (the design notes' alpha_l). */
  alpha: number;
  seed: number;
  init: EditInit;
  schedule: LrSchedule;
  adam: Required<AdamOptions>;
}

/**
 * Defaults, from runs on the embedded model (d = 160; probe of en, sw, zh, es, ar, ja on 12 probe prompts
 * each; 16 en+sw or 32 en+es train prompts; rank 4, alpha = w_r = w_a = 1; one core):
 * - lr 3e-2, cosine decay, 200 full-batch steps. The edit's entries end up of order 0.1-0.5 (b must reach
 *   about alpha Delta_l, whose entries are of order 0.1-1 here) and Adam moves each entry by about lr per
 *   step. Total loss after 200 steps, from 0.26 (sw) / 0.45 (es) at the start: lr 1e-3: 3.2e-3 (sw);
 *   1e-2: 6.4e-4 / 1.7e-3; 3e-2: 2.6e-4 / 8.2e-4; 1e-1: 1.7e-3 (sw; the retain term jumped early on).
 *   More steps keep lowering the training loss (3e-2 x 500 steps: 3.9e-5 on sw), but with 16-32 prompts
 *   against 2 d r + d parameters that is fitting the prompts; judge on held-out prompts before raising it.
 *   200 steps take 0.2-0.7 s at d = 160.
 * - init "probe" (A starts on M_s): no clear winner against "random" (better on es, worse on sw).
 * - Adam's eps: 1e-8 (torch's) and 1e-12 gave the same losses to 4 digits here.
 */
const DEFAULTS = {
  steps: 200,
  lr: 3e-2,
  w_r: 1,
  w_a: 1,
  alpha: 1,
  seed: 0,
  init: "probe" as EditInit,
  schedule: "cosine" as LrSchedule,
  adam: { ...ADAM_DEFAULTS },
};

export interface StepReport {
  /** 0-based; `losses` are at the parameters before this step's update. */
  step: number;
  steps: number;
  lr: number;
  losses: LossValues;
}

export interface FitOptions extends Partial<Omit<TrainSettings, "adam" | "rank">> {
  rank: number;
  adam?: AdamOptions;
  onStep?: (report: StepReport) => void;
  signal?: AbortSignal;
}

export interface FitResult {
  settings: TrainSettings;
  /** The trained parameters rounded to float32, laid out as a delta file stores them: A[i*rank+j] [d x rank]. */
  rank: number;
  A: Float32Array;
  /** B[j*d+i] [rank x d]. */
  B: Float32Array;
  b: Float32Array;
  /**
   * steps + 1 entries: losses[t] at the parameters before step t; losses[steps] at the final
   * parameters as rounded to float32 (what the delta file will hold).
   */
  losses: LossValues[];
  trainMs: number;
}

function resolveSettings(o: FitOptions): TrainSettings {
  const s: TrainSettings = {
    rank: o.rank,
    steps: o.steps ?? DEFAULTS.steps,
    lr: o.lr ?? DEFAULTS.lr,
    w_r: o.w_r ?? DEFAULTS.w_r,
    w_a: o.w_a ?? DEFAULTS.w_a,
    alpha: o.alpha ?? DEFAULTS.alpha,
    seed: o.seed ?? DEFAULTS.seed,
    init: o.init ?? DEFAULTS.init,
    schedule: o.schedule ?? DEFAULTS.schedule,
    adam: { ...DEFAULTS.adam, ...o.adam },
  };
  if (!Number.isInteger(s.rank) || s.rank < 1) throw new RangeError(`rank must be a positive integer, got ${s.rank}`);
  if (!Number.isInteger(s.steps) || s.steps < 0)
    throw new RangeError(`steps must be a non-negative integer, got ${s.steps}`);
  if (!(s.lr > 0) || !Number.isFinite(s.lr)) throw new RangeError(`lr must be positive and finite, got ${s.lr}`);
  for (const [k, v] of [
    ["w_r", s.w_r],
    ["w_a", s.w_a],
  ] as const) {
    if (!(v >= 0) || !Number.isFinite(v)) throw new RangeError(`${k} must be >= 0 and finite, got ${v}`);
  }
  if (!Number.isFinite(s.alpha)) throw new RangeError(`alpha must be finite, got ${s.alpha}`);
  if (!Number.isInteger(s.seed)) throw new RangeError(`seed must be an integer, got ${s.seed}`);
  return s;
}

/** Full-batch Adam on a loss problem: the part of training that needs no model. */
export function fitEdit(problem: LensLossProblem, options: FitOptions): FitResult {
  const steps = fitSteps(problem, options);
  let next = steps.next();
  while (!next.done) next = steps.next();
  return next.value;
}

/**
 * The same, giving the event loop a turn every `sliceMs`: on the backend, training then neither
 * pauses generation and HTTP for its whole length nor delays a cancel until it ends.
 */
export async function fitEditYielding(problem: LensLossProblem, options: FitOptions, sliceMs = 10): Promise<FitResult> {
  const steps = fitSteps(problem, options);
  let sliceStart = performance.now();
  let next = steps.next();
  while (!next.done) {
    if (performance.now() - sliceStart > sliceMs) {
      await new Promise((resolve) => setImmediate(resolve));
      sliceStart = performance.now();
    }
    next = steps.next();
  }
  return next.value;
}

/** The training loop, one step per iteration. */
function* fitSteps(problem: LensLossProblem, options: FitOptions): Generator<void, FitResult> {
  const settings = resolveSettings(options);
  const d = problem.hiddenSize;
  if (settings.rank > d) throw new RangeError(`rank ${settings.rank} exceeds the hidden size ${d}`);
  const started = performance.now();
  const params = initialParams({
    hiddenSize: d,
    rank: settings.rank,
    seed: settings.seed,
    init: settings.init,
    basis: problem.basis,
    basisRank: problem.basisRank,
  });
  const adam = new Adam([params.A.length, params.B.length, params.b.length], settings.adam);
  const losses: LossValues[] = [];
  for (let step = 0; step < settings.steps; step++) {
    options.signal?.throwIfAborted();
    const { grad, ...values } = lensLoss(params, problem, true);
    if (!Number.isFinite(values.total))
      throw new Error(`training diverged at step ${step} (loss ${values.total}); lower lr`);
    const lr = learningRate(settings.schedule, settings.lr, step, settings.steps);
    losses.push(values);
    options.onStep?.({ step, steps: settings.steps, lr, losses: values });
    adam.step([params.A, params.B, params.b], [grad.A, grad.B, grad.b], lr);
    yield;
  }
  const rounded = {
    rank: settings.rank,
    A: Float32Array.from(params.A),
    B: Float32Array.from(params.B),
    b: Float32Array.from(params.b),
  };
  const final = lensLoss(asFloat64(rounded), problem);
  if (!Number.isFinite(final.total)) throw new Error(`training diverged (final loss ${final.total}); lower lr`);
  losses.push(final);
  return { settings, ...rounded, losses, trainMs: performance.now() - started };
}

function asFloat64(p: { rank: number; A: Float32Array; B: Float32Array; b: Float32Array }): EditParams {
  return { rank: p.rank, A: Float64Array.from(p.A), B: Float64Array.from(p.B), b: Float64Array.from(p.b) };
}

/** The loss problem from unedited states and one probe layer (the probe's M_s, m_a and Delta_l there). */
export function lossProblem(
  central: Pick<PromptStates, "last" | "mean" | "hiddenSize" | "count">,
  target: Pick<PromptStates, "last" | "hiddenSize" | "count">,
  layer: ProbeLayer,
  language: string,
  weights: Pick<TrainSettings, "alpha" | "w_r" | "w_a">,
): LensLossProblem {
  const d = central.hiddenSize;
  if (target.hiddenSize !== d || layer.m_a.length !== d) throw new RangeError("states and probe differ in hidden size");
  if (central.count !== target.count)
    throw new RangeError(`the prompts are parallel pairs: ${central.count} central vs ${target.count} target`);
  const shift = layer.deltas[language];
  if (!shift) throw new RangeError(`the probe has no shift for "${language}" at layer ${layer.layer}`);
  const alignRows = new Float64Array(central.count * d);
  for (let k = 0; k < alignRows.length; k++) alignRows[k] = central.last[k]! - target.last[k]!;
  let norm2 = 0;
  for (let i = 0; i < d; i++) norm2 += layer.m_a[i]! * layer.m_a[i]!;
  if (!(norm2 > 0)) throw new RangeError(`the probe's m_a at layer ${layer.layer} is zero`);
  const agnostic = Float64Array.from(layer.m_a, (x) => x / Math.sqrt(norm2));
  return {
    hiddenSize: d,
    retainRows: Float64Array.from(central.mean),
    pushRows: Float64Array.from(target.last),
    alignRows,
    basis: Float64Array.from(layer.M_s),
    basisRank: layer.rank,
    agnostic,
    shift: Float64Array.from(shift),
    alpha: weights.alpha,
    retainWeight: weights.w_r,
    alignWeight: weights.w_a,
  };
}

export interface TrainDeltaOptions extends FitOptions {
  /**
   * A model directory, parts already loaded, or a collector. With a directory or parts, prompts are
   * templated and cut with the probe's settings; a collector uses its own (keep them the probe's).
   */
  model: string | LoadedModel | HiddenStateCollector;
  probe: LensProbe;
  /** Target language (BCP-47 primary tag, one the probe holds). */
  language: string;
  /** The language kept as it was (default "en"); must be the probe's central language. */
  central?: string;
  /** Parallel prompts aligned by index: `en` in the central language, `target` in the target's. */
  prompts: { en: readonly string[]; target: readonly string[] };
  /** The model's fingerprint, when known (default: computed); must match the probe's. */
  fingerprint?: string;
  /** Prompts per forward pass when reading states. */
  batchSize?: number;
  sessionOptions?: ort.InferenceSession.SessionOptions;
}

export interface TrainedDelta extends FitResult {
  language: string;
  central: string;
  /** The edited layer (the model's last). */
  layer: number;
  hiddenSize: number;
  probeId: string;
  baseModel: { id: string; fingerprint: string };
  prompts: number;
  /** statesMs: opening the session, checking the model and reading the states; trainMs: the steps. */
  timings: { statesMs: number; trainMs: number; totalMs: number };
}

/** Reads the unedited states for the prompts, then fits the edit (`fitEdit`). */
export async function trainDelta(o: TrainDeltaOptions): Promise<TrainedDelta> {
  const started = performance.now();
  o.signal?.throwIfAborted();
  const { probe, language } = o;
  const central = o.central ?? "en";
  if (!isLanguage(language)) throw new RangeError(`"${language}" is not a language deltas can be made for`);
  if (central !== probe.central)
    throw new RangeError(`the probe's shifts are measured from "${probe.central}", not "${central}"`);
  if (language === central) throw new RangeError(`the target language must differ from the central one ("${central}")`);
  if (!probe.languages.includes(language))
    throw new RangeError(`the probe has no "${language}" (it holds ${probe.languages.join(", ")})`);
  const { en, target } = o.prompts;
  if (en.length === 0 || en.length !== target.length)
    throw new RangeError(`need parallel prompts: ${en.length} central, ${target.length} target`);
  resolveSettings(o); // fail on bad settings before reading any states

  const modelInfo = typeof o.model === "string" ? readModelDir(o.model) : o.model.info;
  const reader = await PositionStateReader.create(
    typeof o.model === "string" ? { info: modelInfo, tokenizer: ChatTokenizer.fromDir(modelInfo.dir) } : o.model,
    modelInfo.numLayers - 1,
    readerOptions(o, probe),
  );
  try {
    const info = reader.info;
    const layer = reader.layer;
    const probeLayer = probe.layers.find((l) => l.layer === layer);
    if (!probeLayer)
      throw new RangeError(
        `the probe has no layer ${layer} (the model's last); probed: ${probe.layers.map((l) => l.layer).join(", ")}`,
      );
    if (probe.hiddenSize !== info.hiddenSize)
      throw new RangeError(`the probe's hidden size ${probe.hiddenSize} is not the model's ${info.hiddenSize}`);
    const fingerprint = o.fingerprint ?? (await modelFingerprint(info.onnxPath));
    if (fingerprint !== probe.baseModel.fingerprint)
      throw new RangeError(`the probe was made on ${probe.baseModel.fingerprint}, the model is ${fingerprint}`);

    const centralStates = await reader.read(en);
    const targetStates = await reader.read(target);
    const statesMs = performance.now() - started;
    const settings = resolveSettings(o);
    const problem = lossProblem(centralStates, targetStates, probeLayer, language, settings);
    const fit = await fitEditYielding(problem, o);
    return {
      ...fit,
      language,
      central,
      layer,
      hiddenSize: info.hiddenSize,
      probeId: probe.id,
      baseModel: probe.baseModel,
      prompts: en.length,
      timings: { statesMs, trainMs: fit.trainMs, totalMs: performance.now() - started },
    };
  } finally {
    await reader.release();
  }
}

function readerOptions(o: TrainDeltaOptions, probe: LensProbe) {
  // The probe's prompt settings, so states are read as the probe read them.
  return {
    maxPromptTokens: probe.prompt.maxTokens,
    truncation: probe.prompt.truncation,
    ...(probe.prompt.system !== null ? { system: probe.prompt.system } : {}),
    ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
    ...(o.sessionOptions !== undefined ? { sessionOptions: o.sessionOptions } : {}),
    ...(o.signal !== undefined ? { signal: o.signal } : {}),
  };
}
