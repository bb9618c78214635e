/**
 * react-bio-clip/node: read an export directory from disk in Node. Pure @tensorflow/tfjs has no
 * file-system IO handler (that lives in tfjs-node, which downloads a binary at install), so the
 * files are read with fs, every file is checked against the manifest's sha256, and the model
 * is handed to load() through tf.io.fromMemory.
 */
import {createHash} from 'crypto';
import {promises as fs} from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';

import {BioClipFormatError, BioClipLoadError, BioClipMismatchError} from '../errors';
import {EXPORT_PATHS, manifestSha256, parseJson, readGraphModel} from '../io';
import {load} from '../load';
import {checkOptions, DIRECTORY_LOAD_OPTIONS} from '../options';
import {BioClip, ExportManifest, LabelBankJson, LoadOptions} from '../types';

async function readFile(file: string, what: string): Promise<Uint8Array> {
  try {
    const buffer = await fs.readFile(file);
    // A view, not a copy: a 233 MB label_bank.bin is held once.
    return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  } catch (error) {
    throw new BioClipLoadError(`could not read ${what} ${file}: ${(error as Error).message}`, error);
  }
}

/**
 * Reads a file and, with a manifest, checks it against the sha256 the manifest records for
 * `relative` (its path relative to the export directory).
 */
async function readChecked(file: string, relative: string, manifest: ExportManifest | undefined, what: string): Promise<Uint8Array> {
  const bytes = await readFile(file, what);
  const expected = manifest ? manifestSha256(manifest, relative) : null;
  if (expected) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== expected) {
      throw new BioClipMismatchError(
          `${file} is not the file this export's manifest.json records ` +
          `(sha256 ${actual}, expected ${expected})`);
    }
  }
  return bytes;
}

/**
 * A TF.js model folder (model.json and its weight shards, the export's tfjs/) as an IOHandler
 * for load(). With `manifest`, every file is checked against the sha256 it records.
 */
export async function readModelDirectory(modelDir: string, manifest?: ExportManifest): Promise<tf.io.IOHandler> {
  const jsonPath = path.join(modelDir, 'model.json');
  const modelBytes = await readChecked(jsonPath, EXPORT_PATHS.modelJson, manifest, 'model');
  const modelJson = parseJson<tf.io.ModelJSON>(modelBytes, `model ${jsonPath}`);
  if (!modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
    throw new BioClipFormatError(`${jsonPath} is not a TF.js model.json`);
  }
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (weightsManifest) => {
    const specs: tf.io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of weightsManifest) {
      specs.push(...group.weights);
      for (const shard of group.paths) {
        const bytes = await readChecked(path.join(modelDir, shard), `tfjs/${shard}`, manifest, 'weight shard');
        buffers.push(bytes.slice().buffer);
      }
    }
    return [specs, buffers];
  });
  return tf.io.fromMemory(artifacts);
}

/**
 * A label bank folder (label_bank.json, label_bank.bin, names.bin and, when the bank has one,
 * common_names.bin: the export's labels/) as load()'s `labels`. With `manifest`, every file is
 * checked against the sha256 it records. `commonNames: false` leaves common_names.bin unread.
 */
export async function readLabelsDirectory(labelsDir: string, manifest?: ExportManifest, options: {commonNames?: boolean} = {}
): Promise<{json: Uint8Array; bin: Uint8Array; names: Uint8Array; commonNames: Uint8Array | null}> {
  const json = await readChecked(path.join(labelsDir, path.basename(EXPORT_PATHS.labelsJson)), EXPORT_PATHS.labelsJson, manifest, 'label bank');
  const meta = parseJson<LabelBankJson>(json, `label bank ${labelsDir}`);
  const file = (name: string | undefined, fallback: string) => path.basename(name ?? fallback);
  const binName = file(meta?.rows?.file, 'label_bank.bin');
  const namesName = file(meta?.names?.file, 'names.bin');
  const commonName = meta?.common_names?.file && options.commonNames !== false ? path.basename(meta.common_names.file) : null;
  const [bin, names, commonNames] = await Promise.all([
    readChecked(path.join(labelsDir, binName), `labels/${binName}`, manifest, 'label bank data'),
    meta?.format_version === 1 ? Promise.resolve(new Uint8Array(0)) :  // load() refuses it by version
      readChecked(path.join(labelsDir, namesName), `labels/${namesName}`, manifest, 'label bank names'),
    commonName ? readChecked(path.join(labelsDir, commonName), `labels/${commonName}`, manifest, 'label bank common names') : Promise.resolve(null),
  ]);
  return {json, bin, names, commonNames};
}

/**
 * The bare graph model of a TF.js model folder (image float32 [N, R, R, 3] 0..255 -> embedding
 * [N, D]), with load()'s load-time graph fixes, and no manifest or label bank. For running the
 * embedding alone (parity and latency checks); apps use load() or loadFromDirectory().
 */
export async function loadGraphModelFromDirectory(modelDir: string): Promise<tf.GraphModel> {
  return readGraphModel(await readModelDirectory(modelDir));
}

/** The pieces load() takes, read from an export directory (docs/FORMATS.md section 4). */
export async function readExportDirectory(dir: string): Promise<Required<Pick<LoadOptions, 'model' | 'labels' | 'manifest'>>> {
  const manifest = parseJson<ExportManifest>(await readFile(path.join(dir, 'manifest.json'), 'manifest'), `manifest ${dir}/manifest.json`);
  const model = await readModelDirectory(path.join(dir, path.dirname(EXPORT_PATHS.modelJson)), manifest);
  const labels = await readLabelsDirectory(path.join(dir, path.dirname(EXPORT_PATHS.labelsJson)), manifest);
  return {model, labels, manifest};
}

/** load() for an export directory on disk. */
export async function loadFromDirectory(dir: string, options: Omit<LoadOptions, 'model' | 'labels' | 'manifest'> = {}): Promise<BioClip> {
  checkOptions(options, DIRECTORY_LOAD_OPTIONS, 'loadFromDirectory');
  return load({...options, ...(await readExportDirectory(dir))});
}
