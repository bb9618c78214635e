/**
 * Loading an export that Metro bundled into the app (metro.config.js: 'bin' in
 * resolver.assetExts). `require()` of a .json gives the parsed object; `require()` of a .bin
 * gives a Metro asset id (a number), whose bytes have to be read asynchronously:
 *
 *   const options = () => bundledLoadOptions({
 *     modelJson: require('./export/tfjs/model.json'),
 *     modelWeights: [require('./export/tfjs/group1-shard1of1.bin')],
 *     manifest: require('./export/manifest.json'),
 *     labelsJson: require('./export/labels/label_bank.json'),
 *     labelsBin: require('./export/labels/label_bank.bin'),
 *     labelsNames: require('./export/labels/names.bin'),
 *     labelsCommonNames: require('./export/labels/common_names.bin'),  // optional
 *   });
 *   const {model, status} = useBioClip(options);                 // or: await loadBundled({...})
 *
 * Asset id -> bytes, for the weight shards and the label bank alike: expo-asset's
 * `downloadAsync()` gives a file:// `localUri` in every build (in an Android release build the
 * asset is an APK resource, which expo-asset copies to the cache directory first), and
 * expo-file-system's `File.arrayBuffer()` reads it. No fetch() of a file:// URI (not every
 * platform's fetch reads those) and no react-native-fs (which tfjs-react-native's
 * bundleResourceIO needs in release builds; `bundledModel` still offers that IOHandler).
 */
import * as tf from '@tensorflow/tfjs';
import {bundleResourceIO} from '@tensorflow/tfjs-react-native';
import {Asset} from 'expo-asset';
import {File} from 'expo-file-system';

import {BioClipInputError, BioClipLoadError} from '../errors';
import {load} from '../load';
import {BioClip, Bytes, ExportManifest, LabelBankJson, LabelsSource, LoadOptions} from '../types';

export interface BundledExport {
  /** tfjs/model.json, as `require()` gives it (the parsed object). */
  modelJson: tf.io.ModelJSON;
  /** The weight shards' asset ids (`require('./...bin')`), in model.json order. */
  modelWeights: number | number[];
  /** manifest.json, parsed (`require('./export/manifest.json')`). */
  manifest: ExportManifest;
  /** labels/label_bank.json, parsed. */
  labelsJson: LabelBankJson;
  /**
   * labels/label_bank.bin: its asset id (`require('./export/labels/label_bank.bin')`), its
   * bytes, or a URL that fetch() can read.
   */
  labelsBin: number | Bytes | string;
  /** labels/names.bin: asset id, bytes or URL, as labelsBin. */
  labelsNames: number | Bytes | string;
  /** labels/common_names.bin (optional: without it every commonName is null). */
  labelsCommonNames?: number | Bytes | string | null;
  resize?: LoadOptions['resize'];
}

/**
 * tfjs-react-native's bundleResourceIO for a bundled model. In release builds it reads the
 * shards with react-native-fs (a native module: a development build, not Expo Go);
 * bundledLoadOptions / loadBundled read them through expo-asset instead.
 */
export function bundledModel(modelJson: tf.io.ModelJSON, modelWeights: number | number[]): tf.io.IOHandler {
  checkBundledModel(modelJson, modelWeights, 'bundledModel');
  return bundleResourceIO(modelJson, modelWeights);
}

function checkBundledModel(modelJson: tf.io.ModelJSON, modelWeights: number | number[], where: string): number[] {
  const ids = Array.isArray(modelWeights) ? modelWeights : [modelWeights];
  if (ids.length === 0 || !ids.every((id) => typeof id === 'number')) {
    throw new BioClipInputError(
        `${where}: modelWeights must be the weight shards' asset ids, require('./export/tfjs/<shard>.bin') ` +
        `(numbers), got [${ids.map((id) => typeof id)}]`);
  }
  if (!modelJson || typeof modelJson !== 'object' || !Array.isArray(modelJson.weightsManifest)) {
    throw new BioClipInputError(
        `${where}: modelJson must be the parsed tfjs/model.json (require('./export/tfjs/model.json'))`);
  }
  return ids;
}

/**
 * The bytes of a bundled asset, from its Metro asset id. Works in development (the asset comes
 * from the Metro server) and in release builds (from the app bundle / APK resources).
 */
export async function bundledAssetBytes(assetId: number): Promise<Uint8Array> {
  if (typeof assetId !== 'number') {
    throw new BioClipInputError(
        `bundledAssetBytes: expected a Metro asset id (the number require('./file.bin') gives), got ${typeof assetId}`);
  }
  let uri: string | null;
  try {
    const asset = Asset.fromModule(assetId);
    await asset.downloadAsync();
    uri = asset.localUri;
  } catch (error) {
    throw new BioClipLoadError(`could not resolve bundled asset ${assetId}: ${(error as Error).message}`, error);
  }
  if (!uri) throw new BioClipLoadError(`bundled asset ${assetId} has no local file after downloadAsync()`);
  try {
    return new Uint8Array(await new File(uri).arrayBuffer());
  } catch (error) {
    throw new BioClipLoadError(`could not read bundled asset ${assetId} (${uri}): ${(error as Error).message}`, error);
  }
}

/**
 * The model as an in-memory IOHandler, its weight shards read from their asset ids (one
 * shard per asset, in model.json's order, as tfjs-react-native's bundleResourceIO takes them).
 */
async function bundledModelFromBytes(modelJson: tf.io.ModelJSON, modelWeights: number | number[]): Promise<tf.io.IOHandler> {
  const ids = checkBundledModel(modelJson, modelWeights, 'bundledLoadOptions');
  const paths = modelJson.weightsManifest.flatMap((group) => group.paths);
  if (paths.length !== ids.length) {
    throw new BioClipInputError(
        `bundled model: model.json names ${paths.length} weight shard(s) (${paths.join(', ')}) but ` +
        `modelWeights has ${ids.length} asset id(s); pass one require() per shard, in that order`);
  }
  const shards = await Promise.all(ids.map(bundledAssetBytes));
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (manifest) => [
    manifest.flatMap((group) => group.weights),
    shards.map((bytes) => bytes.slice().buffer),
  ]);
  return tf.io.fromMemory(artifacts);
}

/**
 * The label bank of a bundled export (labels/label_bank.json, .bin, names.bin and, if bundled,
 * common_names.bin) with every .bin asset read into bytes: the `labels` of LoadOptions, for any
 * image model (the TF.js one here, or react-bio-clip/tflite's loadTflite).
 */
export async function bundledLabels(
    bundle: Pick<BundledExport, 'labelsJson' | 'labelsBin' | 'labelsNames' | 'labelsCommonNames'>,
    where = 'bundledLabels'): Promise<LabelsSource> {
  if (!bundle || typeof bundle !== 'object') {
    throw new BioClipInputError(`${where}: pass {labelsJson, labelsBin, labelsNames} (and modelJson, modelWeights, manifest to load a model)`);
  }
  const {labelsBin, labelsNames, labelsCommonNames} = bundle;
  if (labelsNames === undefined || labelsNames === null) {
    throw new BioClipInputError(`${where}: labelsNames is missing: require('./export/labels/names.bin')`);
  }
  const asBytes = (asset: number | Bytes | string) => (typeof asset === 'number' ? bundledAssetBytes(asset) : asset);
  const [bin, names, commonNames] = await Promise.all([
    asBytes(labelsBin), asBytes(labelsNames),
    labelsCommonNames === undefined || labelsCommonNames === null ? null : asBytes(labelsCommonNames),
  ]);
  return {json: bundle.labelsJson, bin, names, ...(commonNames !== null ? {commonNames} : {})};
}

/**
 * The LoadOptions for a bundled export, with every .bin asset read into bytes. For
 * `useBioClip(() => bundledLoadOptions({...}))`.
 */
export async function bundledLoadOptions(bundle: BundledExport): Promise<LoadOptions> {
  if (!bundle || typeof bundle !== 'object') {
    throw new BioClipInputError('bundledLoadOptions: pass {modelJson, modelWeights, manifest, labelsJson, labelsBin, labelsNames}');
  }
  const [labels, model] = await Promise.all([
    bundledLabels(bundle, 'bundledLoadOptions'),
    bundledModelFromBytes(bundle.modelJson, bundle.modelWeights),
  ]);
  return {
    model,
    manifest: bundle.manifest,
    labels,
    ...(bundle.resize !== undefined ? {resize: bundle.resize} : {}),
  };
}

export async function loadBundled(bundle: BundledExport): Promise<BioClip> {
  return load(await bundledLoadOptions(bundle));
}
