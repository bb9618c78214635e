/**
 * Loading an export bundled into the app with Metro (add 'bin' to resolver.assetExts):
 *
 *   const bioClip = await loadBundled({
 *     modelJson: require('./export/tfjs/model.json'),
 *     modelWeights: [require('./export/tfjs/group1-shard1of1.bin')],
 *     manifest: require('./export/manifest.json'),
 *     labelsJson: require('./export/labels/label_bank.json'),
 *     labelsBin: require('./export/labels/label_bank.bin'),   // an asset id, read via fetch
 *   });
 */
import type * as tf from '@tensorflow/tfjs';
import {bundleResourceIO} from '@tensorflow/tfjs-react-native';

import {load} from '../load';
import {BioClip, Bytes, ExportManifest, LabelBankJson, LoadOptions} from '../types';

export interface BundledExport {
  modelJson: tf.io.ModelJSON;
  /** The weight shards' asset ids (require('./...bin')), in model.json order. */
  modelWeights: number | number[];
  manifest: ExportManifest;
  labelsJson: LabelBankJson;
  /** label_bank.bin: its bytes, or a URL/asset URI that fetch() can read. */
  labelsBin: Bytes | string;
  resize?: LoadOptions['resize'];
}

/** A tf.io.IOHandler for a bundled model (tfjs-react-native's bundleResourceIO). */
export function bundledModel(modelJson: tf.io.ModelJSON, modelWeights: number | number[]): tf.io.IOHandler {
  return bundleResourceIO(modelJson, modelWeights);
}

export async function loadBundled(bundle: BundledExport): Promise<BioClip> {
  return load({
    model: bundledModel(bundle.modelJson, bundle.modelWeights),
    manifest: bundle.manifest,
    labels: {json: bundle.labelsJson, bin: bundle.labelsBin},
    resize: bundle.resize,
  });
}
