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
import {EXPORT_PATHS, manifestSha256, parseJson} from '../io';
import {load} from '../load';
import {checkOptions, DIRECTORY_LOAD_OPTIONS} from '../options';
import {BioClip, ExportManifest, LoadOptions} from '../types';

async function readFile(file: string, what: string): Promise<Uint8Array> {
  try {
    return new Uint8Array(await fs.readFile(file));
  } catch (error) {
    throw new BioClipLoadError(`could not read ${what} ${file}: ${(error as Error).message}`, error);
  }
}

/** Reads a file of the export and checks it against the sha256 the manifest records. */
async function readChecked(dir: string, relative: string, manifest: ExportManifest, what: string): Promise<Uint8Array> {
  const bytes = await readFile(path.join(dir, relative), what);
  const expected = manifestSha256(manifest, relative);
  if (expected) {
    const actual = createHash('sha256').update(bytes).digest('hex');
    if (actual !== expected) {
      throw new BioClipMismatchError(
          `${path.join(dir, relative)} is not the file this export's manifest.json records ` +
          `(sha256 ${actual}, expected ${expected})`);
    }
  }
  return bytes;
}

/** The pieces load() takes, read from an export directory (docs/FORMATS.md section 4). */
export async function readExportDirectory(dir: string): Promise<Required<Pick<LoadOptions, 'model' | 'labels' | 'manifest'>>> {
  const manifest = parseJson<ExportManifest>(await readFile(path.join(dir, 'manifest.json'), 'manifest'), `manifest ${dir}/manifest.json`);
  const modelBytes = await readChecked(dir, EXPORT_PATHS.modelJson, manifest, 'model');
  const modelJson = parseJson<tf.io.ModelJSON>(modelBytes, `model ${dir}/${EXPORT_PATHS.modelJson}`);
  if (!modelJson.modelTopology || !Array.isArray(modelJson.weightsManifest)) {
    throw new BioClipFormatError(`${dir}/${EXPORT_PATHS.modelJson} is not a TF.js model.json`);
  }
  const artifacts = await tf.io.getModelArtifactsForJSON(modelJson, async (weightsManifest) => {
    const specs: tf.io.WeightsManifestEntry[] = [];
    const buffers: ArrayBuffer[] = [];
    for (const group of weightsManifest) {
      specs.push(...group.weights);
      for (const shard of group.paths) {
        const bytes = await readChecked(dir, `tfjs/${shard}`, manifest, 'weight shard');
        buffers.push(bytes.slice().buffer);
      }
    }
    return [specs, buffers];
  });
  const labelsJson = await readChecked(dir, EXPORT_PATHS.labelsJson, manifest, 'label bank');
  const labelsBin = await readChecked(dir, EXPORT_PATHS.labelsBin, manifest, 'label bank data');
  return {model: tf.io.fromMemory(artifacts), labels: {json: labelsJson, bin: labelsBin}, manifest};
}

/** load() for an export directory on disk. */
export async function loadFromDirectory(dir: string, options: Omit<LoadOptions, 'model' | 'labels' | 'manifest'> = {}): Promise<BioClip> {
  checkOptions(options, DIRECTORY_LOAD_OPTIONS, 'loadFromDirectory');
  return load({...options, ...(await readExportDirectory(dir))});
}
