// Compiled (not run) by `npm test`: the shipped .d.ts files, reached through the package's own
// exports, describe the API a TypeScript app uses. A wrong or missing type fails the build.
import * as tf from '@tensorflow/tfjs';
import {
  BioClip, BioClipError, BioClipInputError, Classification, ClassifyEmbeddingOptions, ClassifyOptions,
  DEFAULT_SPECIES_SIMILARITY_FLOOR, DEFAULT_USER_SIMILARITY_FLOOR, FloatPrecision, load,
  measureFloatPrecision, PrototypesJson, RANKS, Rank, ResizeMethod, squashResize, TaxonScore,
  UserTaxonScore, version,
} from 'react-bio-clip';
import {loadFromDirectory, loadGraphModelFromDirectory, readLabelsDirectory, readModelDirectory} from 'react-bio-clip/node';
import {useBioClip, UseBioClipResult} from 'react-bio-clip/react';
import type {BioClipCameraProps, BundledExport} from 'react-bio-clip/native';

export async function app(): Promise<string> {
  const bioClip: BioClip = await load({
    model: 'https://example.org/export/tfjs/model.json',
    labels: 'https://example.org/export/labels/label_bank.json',
  });
  const fromDisk: BioClip = await loadFromDirectory('/tmp/export', {resize: 'bilinear'});
  const graph: tf.GraphModel = await loadGraphModelFromDirectory('/tmp/export/tfjs');
  const pieces: BioClip = await load({
    model: await readModelDirectory('/tmp/export/tfjs'), labels: await readLabelsDirectory('/tmp/export/labels'),
    manifest: bioClip.manifest,
  });
  const frame: tf.Tensor3D = tf.zeros([480, 640, 3], 'int32');
  const embedding: Float32Array = bioClip.embed(frame);
  const squashed: tf.Tensor3D = squashResize(frame, bioClip.resolution);
  const precision: FloatPrecision = bioClip.precision === 'float16' ? 'float16' : measureFloatPrecision();
  const method: ResizeMethod = 'bicubic';
  await load({model: 'm.json', labels: 'l.json', resize: method, onWarning: (message: string) => message.length});
  const options: ClassifyOptions = {topK: 3, ranks: ['genus', 'species'], threshold: 0.8, restrictTo: ['Aves']};
  const result: Classification = await bioClip.classify({data: new Uint8ClampedArray(4), width: 1, height: 1}, options);
  const best: TaxonScore | null = result.best;
  const floors: ClassifyOptions = {speciesSimilarityFloor: DEFAULT_SPECIES_SIMILARITY_FLOOR, userSimilarityFloor: DEFAULT_USER_SIMILARITY_FLOOR, allowUnitRange: true};
  const scoring: ClassifyEmbeddingOptions = {topK: 1, speciesSimilarityFloor: -1};
  const again: Classification = await bioClip.classifyEmbedding(bioClip.embed(frame, {allowUnitRange: false}), scoring);
  const abstained: boolean = again.abstained || (await bioClip.classify(frame, floors)).similarity < 0.2;
  const userBest: UserTaxonScore | null = result.userBest;
  const userCosine: number | undefined = userBest?.cosine;
  const genus: TaxonScore[] | undefined = result.ranks.genus;
  const rank: Rank = RANKS[0];
  await bioClip.addTaxon('Backyard robin', [frame], {commonName: 'robin'});
  const saved: PrototypesJson = bioClip.exportPrototypes();
  fromDisk.importPrototypes(saved, {replace: true});
  const hook: (o: Parameters<typeof useBioClip>[0]) => UseBioClipResult = useBioClip;
  const props: Partial<BioClipCameraProps> = {intervalMs: 250, onClassification: (c: Classification) => c.species};
  const bundle: Partial<BundledExport> = {modelWeights: [1, 2]};
  try {
    bioClip.embed(frame);
  } catch (error) {
    if (error instanceof BioClipInputError && error.code === 'BAD_INPUT') return error.message;
    if (error instanceof BioClipError) return error.code;
  }
  return [version, embedding.length, squashed.shape, precision, best?.name, genus?.length, rank, hook, props, bundle, graph.inputs.length, pieces.numSpecies, abstained, userCosine].join();
}
