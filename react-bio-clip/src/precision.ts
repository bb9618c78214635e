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
