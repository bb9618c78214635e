/**
 * Which float precision the current TF.js backend stores tensors in, measured rather than
 * read from a flag.
 *
 * Many phone GPUs cannot render to float32 textures; TF.js's WebGL backends (webgl, rn-webgl)
 * then keep every tensor in half-float textures (10-bit mantissa), which moves the embedding
 * (README "WebGL and half-float textures" has the measured cost). `tf.backend().floatPrecision()`
 * misreports this in @tensorflow/tfjs 4.22, and WEBGL_RENDER_FLOAT32_ENABLED can be set by the
 * app, so the probe runs one op on the backend and looks at what comes back.
 */
import * as tf from '@tensorflow/tfjs';

export type FloatPrecision = 'float32' | 'float16';

/** 1 + 2^-12 is exact in float32 and rounds to 1 in float16 (spacing 2^-10 near 1). */
const PROBE = 1 + 2 ** -12;
/** Above WEBGL_CPU_HANDOFF_SIZE_THRESHOLD (128), so WebGL runs the op on the GPU. */
const PROBE_SIZE = 1024;

/** Runs a GPU op on a value float16 cannot hold; 'float16' when it comes back rounded. */
export function measureFloatPrecision(): FloatPrecision {
  const values = tf.tidy(() => tf.mul(tf.fill([PROBE_SIZE], PROBE), tf.onesLike(tf.fill([PROBE_SIZE], 1))).dataSync());
  let worst = 0;
  for (let i = 0; i < values.length; ++i) worst = Math.max(worst, Math.abs(values[i] - PROBE));
  return worst < 2 ** -14 ? 'float32' : 'float16';
}

interface GraphNode {
  name: string;
  op: string;
  input?: string[];
}

/**
 * The node that the graph's output L2-normalizes, or null if the output is not the pattern
 * tf.math.l2_normalize exports to: Mul(x, Rsqrt(Maximum(Sum(Square(x)), eps))) [-> Identity].
 *
 * Why: in half floats (max 65504) that Sum of squares overflows once |x| > 256, and a trained
 * student's pre-normalization embedding can be that long (measured: Inf, then NaN or all-zero
 * embeddings on WebGL with half-float textures). With this node the package can fetch x and
 * normalize it overflow-free (`safeL2Normalize`).
 */
export function preNormalizationNode(model: tf.GraphModel): string | null {
  const artifacts = (model as unknown as {artifacts?: tf.io.ModelArtifacts}).artifacts;
  const nodes = (artifacts?.modelTopology as {node?: GraphNode[]} | undefined)?.node;
  if (!Array.isArray(nodes) || model.outputs.length !== 1) return null;
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const strip = (name: string) => name.replace(/^\^/, '').split(':')[0];
  const inputs = (node: GraphNode | undefined) => (node?.input ?? []).filter((i) => !i.startsWith('^')).map(strip);
  let node = byName.get(strip(model.outputs[0].name));
  while (node && node.op === 'Identity') node = byName.get(inputs(node)[0]);
  if (!node || node.op !== 'Mul') return null;
  const [a, b] = inputs(node);
  for (const [x, r] of [[a, b], [b, a]]) {
    const rsqrt = byName.get(r);
    if (rsqrt?.op !== 'Rsqrt') continue;
    const maximum = byName.get(inputs(rsqrt)[0]);
    const sum = maximum?.op === 'Maximum' ? inputs(maximum).map((n) => byName.get(n)).find((n) => n?.op === 'Sum') : undefined;
    const square = sum ? byName.get(inputs(sum)[0]) : undefined;
    if (square?.op === 'Square' && inputs(square)[0] === x) return x;
  }
  return null;
}

/** Smallest normal half float: a scale that does not underflow in float16 textures. */
const HALF_MIN_NORMAL = 2 ** -14;

/** x / |x| per row, without forming a sum of squares that can overflow float16: x is first
 * divided by its largest |entry|, so the sum is at most the row length. In tf.tidy. */
export function safeL2Normalize(x: tf.Tensor2D): tf.Tensor2D {
  const scaled = tf.div(x, tf.maximum(tf.max(tf.abs(x), -1, true), HALF_MIN_NORMAL));
  return tf.mul(scaled, tf.rsqrt(tf.maximum(tf.sum(tf.square(scaled), -1, true), 1e-12))) as tf.Tensor2D;
}
