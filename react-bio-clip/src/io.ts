/**
 * Reading the export directory's files from URLs, bytes or parsed objects, and checking them
 * against manifest.json. Platform-free: only `fetch` (browsers, React Native, Node >= 18) and,
 * when present, WebCrypto for sha256.
 */
import * as tf from '@tensorflow/tfjs';

import {BioClipFormatError, BioClipInputError, BioClipLoadError, BioClipMismatchError} from './errors';
import {expandScalarFusedBias, specBytes} from './graph_compat';
import {decodeUtf8, LabelBank, SUPPORTED_LABEL_BANK_VERSIONS} from './label_bank';
import {Bytes, ExportManifest, LabelBankJson, LabelsSource} from './types';

export const SUPPORTED_MANIFEST_VERSIONS = [1];
/** manifest.json's `format` (formats/export_manifest.py). */
export const EXPORT_FORMAT = 'bioclip-lite-export';

/** Path of a file relative to the export directory, as manifest.json keys it. */
export const EXPORT_PATHS = {
  modelJson: 'tfjs/model.json',
  labelsJson: 'labels/label_bank.json',
  labelsBin: 'labels/label_bank.bin',
  labelsNames: 'labels/names.bin',
  labelsCommonNames: 'labels/common_names.bin',
};

export function toUint8(bytes: Bytes): Uint8Array {
  return bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
}

/**
 * `relative` resolved against the folder of `base` (a URL or a plain path). Done by hand:
 * React Native's URL class does not implement resolution against a base.
 */
export function resolveRelative(base: string, relative: string): string {
  if (/^[a-z][a-z0-9+.-]*:/i.test(relative)) return relative;
  const origin = /^[a-z][a-z0-9+.-]*:\/\/[^/]*/i.exec(base)?.[0] ?? '';
  const basePath = base.slice(origin.length).split(/[?#]/)[0];
  const parts = relative.startsWith('/') ? [''] : basePath.split('/').slice(0, -1);
  for (const part of relative.split('/')) {
    if (part === '..') {
      if (parts.length > 1 || (parts.length === 1 && parts[0] !== '')) parts.pop();
    } else if (part !== '.' && part !== '') {
      parts.push(part);
    }
  }
  return origin + parts.join('/');
}

export {decodeUtf8};

export async function fetchBytes(url: string, what: string): Promise<Uint8Array> {
  if (typeof fetch !== 'function') {
    throw new BioClipLoadError(`cannot read ${what} from ${url}: there is no fetch() here; pass the bytes instead`);
  }
  let response: Response;
  try {
    response = await fetch(url);
  } catch (error) {
    throw new BioClipLoadError(`could not fetch ${what} from ${url}: ${(error as Error).message}`, error);
  }
  if (!response.ok) {
    throw new BioClipLoadError(`could not fetch ${what} from ${url}: HTTP ${response.status}`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

export function parseJson<T>(bytes: Uint8Array, what: string): T {
  try {
    return JSON.parse(decodeUtf8(bytes)) as T;
  } catch (error) {
    throw new BioClipFormatError(`${what} is not valid JSON: ${(error as Error).message}`);
  }
}

/** Lowercase hex sha256, or null where WebCrypto is missing (React Native without a polyfill). */
export async function sha256Hex(bytes: Uint8Array): Promise<string | null> {
  const subtle = (globalThis as {crypto?: {subtle?: SubtleCrypto}}).crypto?.subtle;
  if (!subtle) return null;
  const digest = new Uint8Array(await subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
  return Array.from(digest, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** The sha256 the manifest records for a file of the export, if it records one. */
export function manifestSha256(manifest: ExportManifest, relativePath: string): string | null {
  const entry = manifest.files?.[relativePath];
  if (entry && typeof entry.sha256 === 'string') return entry.sha256.toLowerCase();
  const flat = (manifest as {sha256?: {[path: string]: string}}).sha256;
  if (flat && typeof flat[relativePath] === 'string') return flat[relativePath].toLowerCase();
  return null;
}

/**
 * Refuses bytes whose sha256 differs from the manifest's record: that file belongs to another
 * export. Silently passes when the manifest has no record or the platform cannot hash.
 */
export async function checkSha256(
    manifest: ExportManifest, relativePath: string, bytes: Uint8Array, where: string): Promise<void> {
  const expected = manifestSha256(manifest, relativePath);
  if (!expected) return;
  const actual = await sha256Hex(bytes);
  if (actual !== null && actual !== expected) {
    throw new BioClipMismatchError(
        `${where} is not the ${relativePath} of this export: its sha256 is ${actual}, ` +
        `manifest.json records ${expected}`);
  }
}

export function checkManifest(manifest: ExportManifest, where: string): ExportManifest {
  const bad = (what: string): never => {
    throw new BioClipFormatError(`manifest ${where}: ${what}`);
  };
  if (!manifest || typeof manifest !== 'object') bad('is not a JSON object');
  if (manifest.format !== undefined && manifest.format !== EXPORT_FORMAT) {
    bad(`format is "${manifest.format}", expected "${EXPORT_FORMAT}"`);
  }
  if (!SUPPORTED_MANIFEST_VERSIONS.includes(manifest.format_version)) {
    bad(`format_version ${manifest.format_version} is not supported (this package reads ` +
        `${SUPPORTED_MANIFEST_VERSIONS.join(', ')})`);
  }
  if (!Number.isInteger(manifest.embed_dim) || manifest.embed_dim < 1) bad(`embed_dim ${manifest.embed_dim} is not a positive integer`);
  if (!Number.isInteger(manifest.resolution) || manifest.resolution < 1) bad(`resolution ${manifest.resolution} is not a positive integer`);
  const pre = manifest.preprocessing;
  if (!pre) bad('preprocessing is missing');
  // Only the squash geometry is implemented here; a centre-crop export would silently lose accuracy.
  if (pre.resize !== 'squash') bad(`preprocessing.resize is "${pre.resize}", this package implements "squash" only`);
  // The package feeds 0..255 pixels; a model that expects them normalized outside would be off.
  const normalization = (pre as {normalization?: string}).normalization;
  if (normalization !== undefined && normalization !== 'inside the model') {
    bad(`preprocessing.normalization is "${normalization}", this package needs "inside the model"`);
  }
  return manifest;
}

export async function readManifest(source: string | ExportManifest): Promise<{manifest: ExportManifest; where: string}> {
  if (typeof source === 'string') {
    const manifest = parseJson<ExportManifest>(await fetchBytes(source, 'manifest.json'), `manifest ${source}`);
    return {manifest: checkManifest(manifest, source), where: source};
  }
  return {manifest: checkManifest(source, '(object)'), where: '(object)'};
}

/**
 * In React Native, `require('./labels/label_bank.bin')` is a Metro asset id (a number), not the
 * file's bytes. Taken as bytes it would become a zero-filled array of that length (a label bank
 * of zeros, or a misleading sha mismatch), so it is refused by name.
 */
function refuseAssetId(value: unknown, option: string, file: string): void {
  if (typeof value === 'number') {
    throw new BioClipInputError(
        `${option} is the number ${value}, not the bytes or a URL of ${file}: in React Native ` +
        `require('...${file}') gives a Metro asset id. Pass it to loadBundled() or ` +
        `bundledLoadOptions() from 'react-bio-clip/native' (which read the asset's bytes), or ` +
        `pass the bytes (Uint8Array / ArrayBuffer) yourself`);
  }
}

/** The files label_bank.json names, with the bytes given for each (null: not given). */
async function checkBankFile(manifest: ExportManifest, json: LabelBankJson, file: string, bytes: Uint8Array,
                             where: string): Promise<void> {
  // label_bank.json also records its own files: catches files from different banks.
  const own = json?.files?.[file];
  if (own && typeof own.bytes === 'number' && own.bytes !== bytes.byteLength) {
    throw new BioClipMismatchError(
        `${file} does not belong to label bank ${where}: it has ${bytes.byteLength} bytes, label_bank.json records ${own.bytes}`);
  }
  const fromManifest = manifestSha256(manifest, `labels/${file}`);
  const fromJson = own && typeof own.sha256 === 'string' ? own.sha256.toLowerCase() : null;
  if (!fromManifest && !fromJson) return;
  const actual = await sha256Hex(bytes);  // once, however many records there are (233 MB at 454k)
  if (actual === null) return;
  if (fromManifest && actual !== fromManifest) {
    throw new BioClipMismatchError(
        `${file} of ${where} is not the labels/${file} of this export: its sha256 is ${actual}, ` +
        `manifest.json records ${fromManifest}`);
  }
  if (fromJson && actual !== fromJson) {
    throw new BioClipMismatchError(
        `${file} does not belong to label bank ${where}: its sha256 is ${actual}, label_bank.json records ${fromJson}`);
  }
}

function checkBankVersion(json: LabelBankJson, where: string): void {
  // Before the files are fetched: a version 1 bank has no names.bin to fetch.
  if (json && typeof json === 'object' && json.format_version !== undefined && !SUPPORTED_LABEL_BANK_VERSIONS.includes(json.format_version)) {
    throw new BioClipFormatError(
        `label bank ${where}: format_version ${json.format_version} is not supported (this package reads ` +
        `${SUPPORTED_LABEL_BANK_VERSIONS.join(', ')}); re-export the label bank with this version's bioclip_lite_tf ` +
        '(python -m bioclip_lite_tf.export, or python -m bioclip_lite_tf.device_label_bank)');
  }
}

/** Reads, hash-checks and decodes the label bank, then checks it against the manifest. */
export async function readLabelBank(source: LabelsSource, manifest: ExportManifest): Promise<LabelBank> {
  let json: LabelBankJson;
  let where: string;
  let jsonBytes: Uint8Array | null = null;
  let files: {bin: Uint8Array; names: Uint8Array; commonNames: Uint8Array | null};
  if (typeof source === 'string') {
    where = source;
    jsonBytes = await fetchBytes(source, 'label_bank.json');
    json = parseJson<LabelBankJson>(jsonBytes, `label bank ${source}`);
    checkBankVersion(json, where);
    const fetchFile = (file: string) => fetchBytes(resolveRelative(source, file), file);
    const common = json?.common_names?.file;
    const [bin, names, commonNames] = await Promise.all([
      fetchFile(json?.rows?.file ?? 'label_bank.bin'), fetchFile(json?.names?.file ?? 'names.bin'),
      common ? fetchFile(common) : Promise.resolve(null)]);
    files = {bin, names, commonNames};
  } else if (source && typeof source === 'object' && 'json' in source && 'bin' in source) {
    refuseAssetId(source.json, 'labels.json', 'label_bank.json');
    refuseAssetId(source.bin, 'labels.bin', 'label_bank.bin');
    refuseAssetId(source.names, 'labels.names', 'names.bin');
    refuseAssetId(source.commonNames, 'labels.commonNames', 'common_names.bin');
    where = typeof source.json === 'string' ? source.json : '(object)';
    if (typeof source.json === 'string') {
      jsonBytes = await fetchBytes(source.json, 'label_bank.json');
    } else if (source.json instanceof ArrayBuffer || source.json instanceof Uint8Array) {
      jsonBytes = toUint8(source.json);
    }
    json = jsonBytes ? parseJson<LabelBankJson>(jsonBytes, `label bank ${where}`) : source.json as LabelBankJson;
    checkBankVersion(json, where);
    if (source.names === undefined || source.names === null) {
      throw new BioClipInputError('labels.names is missing: give names.bin (its URL or bytes) beside labels.json and labels.bin');
    }
    const get = async (value: string | Bytes, file: string) => (typeof value === 'string' ? fetchBytes(value, file) : toUint8(value));
    files = {
      bin: await get(source.bin, 'label_bank.bin'),
      names: await get(source.names, 'names.bin'),
      commonNames: source.commonNames ? await get(source.commonNames, 'common_names.bin') : null,
    };
  } else {
    throw new BioClipFormatError('labels must be the URL of label_bank.json or {json, bin, names, commonNames?}');
  }
  if (jsonBytes) await checkSha256(manifest, EXPORT_PATHS.labelsJson, jsonBytes, `label bank ${where}`);
  await checkBankFile(manifest, json, json?.rows?.file ?? 'label_bank.bin', files.bin, where);
  await checkBankFile(manifest, json, json?.names?.file ?? 'names.bin', files.names, where);
  if (files.commonNames) await checkBankFile(manifest, json, json?.common_names?.file ?? 'common_names.bin', files.commonNames, where);
  const bank = LabelBank.parse(json, files, where);
  if (bank.embedDim !== manifest.embed_dim) {
    throw new BioClipMismatchError(
        `label bank ${where} has embed_dim ${bank.embedDim} but the model's manifest says ${manifest.embed_dim}`);
  }
  const expected = manifest.label_bank;
  if (expected && expected.num_species !== undefined && expected.num_species !== bank.numSpecies) {
    throw new BioClipMismatchError(
        `label bank ${where} has ${bank.numSpecies} species but the model's manifest says ${expected.num_species}`);
  }
  if (expected && expected.dtype !== undefined && expected.dtype !== bank.dtype) {
    throw new BioClipMismatchError(
        `label bank ${where} stores ${bank.dtype} embeddings but the model's manifest says ${expected.dtype}`);
  }
  return bank;
}

/**
 * Loads the graph model. A URL is fetched file by file (so every shard is hash-checked against
 * `manifest`, when given, and a missing shard names itself); an IOHandler is used as given.
 */
export async function readGraphModel(
    model: string | tf.io.IOHandler, manifest?: ExportManifest): Promise<tf.GraphModel> {
  let artifacts: tf.io.ModelArtifacts;
  if (typeof model === 'string') {
    const jsonBytes = await fetchBytes(model, 'model.json');
    if (manifest) await checkSha256(manifest, EXPORT_PATHS.modelJson, jsonBytes, `model ${model}`);
    const modelJson = parseJson<tf.io.ModelJSON>(jsonBytes, `model ${model}`);
    if (!modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
      throw new BioClipFormatError(`model ${model} is not a TF.js model.json (no modelTopology/weightsManifest)`);
    }
    artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (weightsManifest) => {
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: ArrayBuffer[] = [];
      for (const group of weightsManifest) {
        specs.push(...group.weights);
        for (const path of group.paths) {
          const url = resolveRelative(model, path);
          const bytes = await fetchBytes(url, `weight shard ${path}`);
          if (manifest) await checkSha256(manifest, `tfjs/${path}`, bytes, `weight shard ${url}`);
          buffers.push(bytes.slice().buffer);
        }
      }
      return [specs, buffers];
    });
  } else if (model && typeof model.load === 'function') {
    try {
      artifacts = await model.load();
    } catch (error) {
      throw new BioClipLoadError(`the model's IOHandler failed to load: ${(error as Error).message}`, error);
    }
    if (!artifacts || !artifacts.modelTopology) throw new BioClipFormatError('the model\'s IOHandler returned no modelTopology');
  } else {
    throw new BioClipFormatError('model must be the URL of model.json or a tf.io.IOHandler');
  }
  checkWeightBytes(artifacts);
  let fixed: tf.io.ModelArtifacts;
  try {
    fixed = expandScalarFusedBias(artifacts);
  } catch (error) {
    throw new BioClipFormatError(`the TF.js model's weights are malformed: ${(error as Error).message}`);
  }
  return buildGraphModel(fixed);
}

/**
 * Refuses weights that are shorter or longer than model.json's weightsManifest describes (a
 * truncated shard, a shard of another model), before any tensor is made from them.
 */
function checkWeightBytes(artifacts: tf.io.ModelArtifacts): void {
  const specs = artifacts.weightSpecs ?? [];
  let expected = 0;
  try {
    for (const spec of specs) expected += specBytes(spec);
  } catch (error) {
    throw new BioClipFormatError(`the TF.js model's weightsManifest is malformed: ${(error as Error).message}`);
  }
  const data = artifacts.weightData as ArrayBuffer | ArrayBuffer[] | undefined;
  const actual = data === undefined ? 0 : (Array.isArray(data) ? data : [data]).reduce((sum, b) => sum + b.byteLength, 0);
  if (actual !== expected) {
    throw new BioClipFormatError(
        `the TF.js model's weight shards hold ${actual} bytes but its model.json describes ${expected} ` +
        `(${specs.length} weights): a truncated or foreign shard`);
  }
}

/**
 * tf.loadGraphModelSync inside tf.tidy: the load is synchronous, so the tidy sees every tensor it
 * makes. When it throws half way (weights it cannot decode, an op TF.js lacks, a malformed
 * topology), the weights decoded so far are freed instead of leaking; on success they are kept.
 */
function buildGraphModel(artifacts: tf.io.ModelArtifacts): tf.GraphModel {
  let model: tf.GraphModel | null = null;
  try {
    tf.tidy(() => {
      const loaded = tf.loadGraphModelSync(artifacts);
      for (const tensors of Object.values(loaded.weights)) tensors.forEach((t) => tf.keep(t));
      model = loaded as unknown as tf.GraphModel;  // the same class; only its IOHandler type differs
    });
  } catch (error) {
    throw new BioClipLoadError(`could not load the TF.js graph model: ${(error as Error).message}`, error);
  }
  return model!;
}
