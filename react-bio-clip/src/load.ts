/**
 * load(): the one way to make a BioClip. Reads and checks the export's manifest, label bank and
 * graph model, refuses a pair that does not belong together, and warms the model up.
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipModel} from './bio_clip_model';
import {GraphModelEmbedder} from './embedder';
import {BioClipError, BioClipFormatError, BioClipLoadError, BioClipMismatchError} from './errors';
import {EXPORT_PATHS, manifestSha256, readGraphModel, readLabelBank, readManifest, resolveRelative} from './io';
import {checkOptions, LOAD_OPTIONS} from './options';
import {measureFloatPrecision, preNormalizationNode} from './precision';
import {RESIZE_METHODS} from './preprocess';
import {BioClip, LoadOptions} from './types';

/**
 * Loads a BioCLIP Lite export.
 *
 * Checks, each failing with a typed error: manifest format_version; label bank format_version,
 * embed_dim, species count, dtype and sha256 against the manifest; model weights' sha256 (when
 * `model` is a URL); model input shape [N, R, R, 3] against the manifest's resolution; model
 * output width against embed_dim.
 */
export async function load(options: LoadOptions): Promise<BioClip> {
  if (!options || typeof options !== 'object') throw new BioClipFormatError('load: pass {model, labels, manifest?}');
  checkOptions(options, LOAD_OPTIONS, 'load');
  const {model, labels} = options;
  let manifestSource = options.manifest;
  if (manifestSource === undefined) {
    if (typeof model !== 'string') {
      throw new BioClipFormatError(
          'load: with an IOHandler model, pass `manifest` (the export\'s manifest.json, parsed or as a URL) ' +
          'so the model and label bank can be checked against each other');
    }
    manifestSource = resolveRelative(model, '../manifest.json');
  }
  const resize = options.resize ?? 'bicubic';
  if (!RESIZE_METHODS.includes(resize)) {
    throw new BioClipFormatError(`load: resize must be one of ${RESIZE_METHODS.map((m) => `"${m}"`).join(', ')}, got "${resize}"`);
  }
  // On React Native the rn-webgl backend registers asynchronously; wait for whichever is chosen.
  await tf.ready();
  const {manifest} = await readManifest(manifestSource);
  const bank = await readLabelBank(labels, manifest);
  const graph = await readGraphModel(model, manifest);
  let bioClip: BioClipModel | null = null;
  try {
    const input = graph.inputs[0]?.shape;
    if (graph.inputs.length !== 1 || !input || input.length !== 4 ||
        (input[1] !== -1 && input[1] !== manifest.resolution) ||
        (input[2] !== -1 && input[2] !== manifest.resolution) || input[3] !== 3) {
      throw new BioClipMismatchError(
          `the model's input is [${input}] but the manifest says float32 [N, ${manifest.resolution}, ` +
          `${manifest.resolution}, 3]`);
    }
    const embedder = new GraphModelEmbedder(graph);
    bioClip = new BioClipModel(embedder, bank, manifest, resize, manifestSha256(manifest, EXPORT_PATHS.modelJson));
    bioClip.precision = measureFloatPrecision();
    if (bioClip.precision === 'float16') {
      embedder.preNormalization = preNormalizationNode(graph);
      const warn = options.onWarning ?? ((message: string) => console.warn(message));
      warn(`react-bio-clip: the ${tf.getBackend()} backend stores tensors as half floats on this device ` +
           '(no float32 render targets, or WEBGL_RENDER_FLOAT32_ENABLED=false), so embeddings differ from the ' +
           'float32 model and answers close to a tie can change; see the README, "WebGL and half-float textures"');
    }
    if (!options.skipWarmup) {
      try {
        bioClip.warmUp();
      } catch (error) {
        if (error instanceof BioClipError) throw error;
        // An op TF.js lacks or a weight that does not fit the graph shows up only when it runs.
        throw new BioClipLoadError(`the model failed its warm-up inference: ${(error as Error).message}`, error);
      }
      // Also builds any per-backend scoring tensors now, not during the first camera frame.
      await bioClip.classifyEmbedding(new Float32Array(manifest.embed_dim));
    }
    return bioClip;
  } catch (error) {
    if (bioClip) bioClip.dispose(); else graph.dispose();
    throw error;
  }
}

/** The TF.js backend in use, for logs (tfjs-react-native may silently fall back to cpu). */
export function backendName(): string {
  return tf.getBackend();
}
