/**
 * loadTflite(): a BioClip whose image model runs in TFLite (react-native-fast-tflite) while the
 * label bank, hierarchy, `best`, `restrictTo` and few-shot code are the TF.js path's own
 * (BioClipModel with a TfliteEmbedder in place of the graph model).
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipModel} from '../bio_clip_model';
import {BioClipError, BioClipFormatError, BioClipLoadError} from '../errors';
import {manifestSha256, readLabelBank, readManifest} from '../io';
import {checkOptions} from '../options';
import {measureFloatPrecision} from '../precision';
import {RESIZE_METHODS} from '../preprocess';
import {BioClip, ExportManifest, LabelsSource} from '../types';
import {fastTflite, TensorflowModel, TfliteDelegate, TfliteModelSource} from './fast_tflite';
import {TfliteEmbedder} from './tflite_embedder';

/** Where the export keeps its TFLite model (docs/FORMATS.md section 4). */
export const TFLITE_MODEL_PATH = 'tflite/model_int8.tflite';

export interface TfliteLoadOptions {
  /**
   * The export's tflite/model_int8.tflite: `require('./export/tflite/model_int8.tflite')` (with
   * "tflite" in Metro's assetExts), `{url: 'file://...'}`, or a TensorflowModel already loaded
   * with react-native-fast-tflite's loadTensorflowModel / useTensorflowModel.
   */
  model: TfliteModelSource | TensorflowModel;
  /** The export's label bank, exactly as for load(). */
  labels: LabelsSource;
  /** The export's manifest.json (URL or parsed object): required, a .tflite asset has no "next to". */
  manifest: string | ExportManifest;
  /** react-native-fast-tflite delegates when `model` is a source; default [] (CPU, XNNPACK). */
  delegates?: TfliteDelegate[];
  /** As load(): how a photo that is not R x R is squashed. Default 'bicubic' (squashResize). */
  resize?: 'bicubic' | 'area' | 'bilinear';
  /** Skip the warm-up inference. Default false. */
  skipWarmup?: boolean;
}

export const TFLITE_LOAD_OPTIONS = ['model', 'labels', 'manifest', 'delegates', 'resize', 'skipWarmup'] as const;

function isLoadedModel(model: unknown): model is TensorflowModel {
  return !!model && typeof model === 'object' && typeof (model as TensorflowModel).runSync === 'function' &&
      Array.isArray((model as TensorflowModel).inputs);
}

/**
 * Loads a BioCLIP Lite export's TFLite model and label bank. Checks, each failing with a typed
 * error: manifest and label bank as load() does; the TFLite model's input float32
 * [1, R, R, 3] and output float32 [1, D] against the manifest; the manifest lists the TFLite
 * model; a warm-up inference.
 */
export async function loadTflite(options: TfliteLoadOptions): Promise<BioClip> {
  if (!options || typeof options !== 'object') throw new BioClipFormatError('loadTflite: pass {model, labels, manifest}');
  checkOptions(options, TFLITE_LOAD_OPTIONS, 'loadTflite');
  if (options.manifest === undefined) {
    throw new BioClipFormatError("loadTflite: pass `manifest` (the export's manifest.json, parsed or as a URL)");
  }
  const resize = options.resize ?? 'bicubic';
  if (!RESIZE_METHODS.includes(resize)) {
    throw new BioClipFormatError(`loadTflite: resize must be one of ${RESIZE_METHODS.map((m) => `"${m}"`).join(', ')}, got "${resize}"`);
  }
  await tf.ready();
  const {manifest} = await readManifest(options.manifest);
  if (manifest.files && !manifest.files[TFLITE_MODEL_PATH]) {
    throw new BioClipFormatError(`loadTflite: the manifest lists no ${TFLITE_MODEL_PATH} (an export made without TFLite?)`);
  }
  const bank = await readLabelBank(options.labels, manifest);
  let model: TensorflowModel;
  if (isLoadedModel(options.model)) {
    model = options.model;
  } else {
    try {
      model = await fastTflite().loadTensorflowModel(options.model, options.delegates ?? []);
    } catch (error) {
      throw new BioClipLoadError(`loadTflite: the TFLite model did not load: ${(error as Error).message}`, error);
    }
  }
  let bioClip: BioClipModel | null = null;
  let embedder: TfliteEmbedder | null = null;
  try {
    embedder = new TfliteEmbedder(model, manifest.resolution, manifest.embed_dim);
    // Few-shot prototypes are tied to the model that embedded them: the TFLite model's hash.
    bioClip = new BioClipModel(embedder, bank, manifest, resize, manifestSha256(manifest, TFLITE_MODEL_PATH));
    bioClip.precision = measureFloatPrecision();
    if (!options.skipWarmup) {
      try {
        bioClip.warmUp();
      } catch (error) {
        if (error instanceof BioClipError) throw error;
        throw new BioClipLoadError(`the TFLite model failed its warm-up inference: ${(error as Error).message}`, error);
      }
      await bioClip.classifyEmbedding(new Float32Array(manifest.embed_dim));
    }
    return bioClip;
  } catch (error) {
    if (bioClip) bioClip.dispose(); else if (embedder) embedder.dispose(); else model.dispose?.();
    throw error;
  }
}
