/**
 * The page the WebGL tests drive (test-browser/): the built package (dist/) and @tensorflow/tfjs
 * bundled for the browser. ?half=1 sets WEBGL_RENDER_FLOAT32_ENABLED=false before the first op
 * (half-float textures, as on many phones); ?backend= picks the backend (default webgl).
 * Everything runs in the page; the test reads results through window.harness.
 */
import * as tf from '@tensorflow/tfjs';

import * as rbc from '../dist/index.js';

type Photo = {name: string; height: number; width: number};

const params = new URLSearchParams(location.search);
let bioClip: rbc.BioClip | null = null;
const warnings: string[] = [];

async function rgbTensor(url: string, height: number, width: number): Promise<tf.Tensor3D> {
  const bytes = new Uint8Array(await (await fetch(url)).arrayBuffer());
  if (bytes.length !== height * width * 3) throw new Error(`${url}: ${bytes.length} bytes is not ${height} x ${width} x 3`);
  return tf.tensor3d(new Int32Array(bytes), [height, width, 3], 'int32');
}

const harness = {
  /** Sets up the backend; returns what it got (the test refuses a silent fallback). */
  async init() {
    if (params.get('half') === '1') tf.env().set('WEBGL_RENDER_FLOAT32_ENABLED', false);
    const requested = params.get('backend') ?? 'webgl';
    const ok = await tf.setBackend(requested);
    await tf.ready();
    return {requested, ok, backend: tf.getBackend(), float32Flag: tf.env().getBool('WEBGL_RENDER_FLOAT32_ENABLED'),
            measured: rbc.measureFloatPrecision(), userAgent: navigator.userAgent};
  },
  async load(exportUrl: string) {
    bioClip = await rbc.load({model: `${exportUrl}/tfjs/model.json`, labels: `${exportUrl}/labels/label_bank.json`,
                              onWarning: (message: string) => warnings.push(message)});
    return {precision: bioClip.precision, warnings, resolution: bioClip.resolution, numSpecies: bioClip.numSpecies};
  },
  /** Per photo: the embedding (via the package's default resize, squashResize) and top-1 species row. */
  async embedAll(photosUrl: string, photos: Photo[]) {
    const out = [];
    for (const p of photos) {
      const image = await rgbTensor(`${photosUrl}/${p.name}.rgb`, p.height, p.width);
      const result = await bioClip!.classify(image, {topK: 1});
      out.push({name: p.name, embedding: Array.from(result.embedding), top1: result.species[0].index});
      image.dispose();
    }
    return out;
  },
  /**
   * The exported graph run as it is (tf.loadGraphModel + predict, no package), on R x R photos:
   * how many embeddings come out non-finite or all zero. Shows whether the fixture exercises
   * the half-float overflow of the graph's own L2 normalization that the package avoids.
   */
  async rawGraphBroken(modelUrl: string, photosUrl: string, photos: Photo[]) {
    const model = await tf.loadGraphModel(modelUrl);
    let broken = 0;
    for (const p of photos) {
      const image = await rgbTensor(`${photosUrl}/${p.name}.rgb`, p.height, p.width);
      const values = tf.tidy(() => (model.predict(tf.expandDims(tf.cast(image, 'float32'), 0)) as tf.Tensor).dataSync());
      image.dispose();
      if (!values.every(Number.isFinite) || values.every((v) => v === 0)) broken += 1;
    }
    model.dispose();
    return broken;
  },
  /** squashResize of a frame on this backend, as a plain array (for the pixel parity check). */
  async squash(url: string, height: number, width: number, resolution: number) {
    const image = await rgbTensor(url, height, width);
    const start = performance.now();
    const out = rbc.squashResize(image, resolution);
    const values = await out.data();
    const ms = performance.now() - start;
    out.dispose();
    image.dispose();
    return {values: Array.from(values), ms};
  },
  /** The browser's own decode of an image file (createImageBitmap + fromPixels), RGB bytes. */
  async decode(url: string) {
    const bitmap = await createImageBitmap(await (await fetch(url)).blob(),
                                           {colorSpaceConversion: 'none', premultiplyAlpha: 'none'});
    const pixels = tf.browser.fromPixels(bitmap);
    const values = Array.from(await pixels.data());
    const shape = pixels.shape;
    pixels.dispose();
    bitmap.close();
    return {values, shape};
  },
  numTensors: () => tf.memory().numTensors,
  /** TF.js itself, for diagnostics from the test. */
  tf,
  dispose() {
    bioClip?.dispose();
    bioClip = null;
  },
};

(window as unknown as {harness: typeof harness}).harness = harness;
