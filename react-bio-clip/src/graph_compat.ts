/**
 * Load-time fixes for converter output that some TF.js backends reject. Applied to the model
 * artifacts before tf.loadGraphModel; the math is unchanged.
 *
 * Scalar fused bias. MobileNetV3's hard-sigmoid is relu6(x + 3) / 6. When x is a bias-free
 * convolution (the squeeze-excite expand conv), the TF.js converter fuses the "+ 3" into
 * _FusedConv2D as a BiasAdd whose bias is the scalar constant 3. The cpu and webgl backends
 * broadcast it, but the wasm backend throws "FusedConv2D only supports rank-1 bias but got
 * rank 0". The fix: give such nodes a float32 [C] bias holding the scalar C times.
 */
import * as tf from '@tensorflow/tfjs';
import {halfToFloat} from './float16';

interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: {[key: string]: any};
}

const FUSED_CONV_OPS = new Set(['_FusedConv2D', 'FusedDepthwiseConv2dNative']);
const BYTES: {[dtype: string]: number} = {float32: 4, int32: 4, bool: 1, uint8: 1, float16: 2, int8: 1};

/** Bytes a weight takes in the shards (quantized weights count their stored dtype). */
export function specBytes(spec: tf.io.WeightsManifestEntry): number {
  const size = spec.shape.reduce((a, b) => a * b, 1);
  const dtype = spec.quantization ? spec.quantization.dtype : spec.dtype;
  const bytes = BYTES[dtype];
  if (bytes === undefined) throw new Error(`weight ${spec.name} has dtype ${dtype}`);
  return size * bytes;
}

/** The value of a scalar weight, dequantized as tfjs-core does. */
function readScalar(spec: tf.io.WeightsManifestEntry, data: DataView, offset: number): number {
  const q = spec.quantization;
  if (!q) return spec.dtype === 'int32' ? data.getInt32(offset, true) : data.getFloat32(offset, true);
  if (q.dtype === 'float16') return halfToFloat(data.getUint16(offset, true));
  const raw = q.dtype === 'uint8' ? data.getUint8(offset) : data.getInt8(offset);
  return raw * (q.scale ?? 1) + (q.min ?? 0);
}

/** Output channels of a fused conv node from its filter's shape, or null if unknown. */
function outputChannels(node: GraphNode, shapes: Map<string, number[]>): number | null {
  const filter = shapes.get((node.input?.[1] ?? '').split(':')[0]);
  if (!filter || filter.length !== 4) return null;
  return node.op === 'FusedDepthwiseConv2dNative' ? filter[2] * filter[3] : filter[3];
}

/**
 * Returns artifacts in which every fused conv with a scalar bias has a [C] bias instead (the
 * same artifacts object if there is none). Never throws on graphs it does not understand: it
 * leaves them as they are.
 */
export function expandScalarFusedBias(artifacts: tf.io.ModelArtifacts): tf.io.ModelArtifacts {
  const topology = artifacts.modelTopology as {node?: GraphNode[]} | undefined;
  const specs = artifacts.weightSpecs;
  if (!topology || !Array.isArray(topology.node) || !specs || !artifacts.weightData) return artifacts;
  const shapes = new Map(specs.map((s) => [s.name, s.shape]));
  const offsets = new Map<string, number>();
  let offset = 0;
  for (const spec of specs) {
    offsets.set(spec.name, offset);
    offset += specBytes(spec);
  }
  const candidates = topology.node.filter((node) => FUSED_CONV_OPS.has(node.op) && node.input && node.input.length >= 3 &&
      shapes.get(node.input[2].split(':')[0])?.length === 0);
  if (candidates.length === 0) return artifacts;

  const weightData = tf.io.concatenateArrayBuffers(artifacts.weightData as ArrayBuffer | ArrayBuffer[]);
  const view = new DataView(weightData);
  const newSpecs: tf.io.WeightsManifestEntry[] = [];
  const newNodes: GraphNode[] = [];
  const newBytes: Float32Array[] = [];
  const made = new Map<string, string>();
  const nodes = topology.node.map((node) => {
    if (!candidates.includes(node)) return node;
    const biasName = node.input![2].split(':')[0];
    const channels = outputChannels(node, shapes);
    if (channels === null) return node;
    const key = `${biasName}|${channels}`;
    let name = made.get(key);
    if (!name) {
      const spec = specs.find((s) => s.name === biasName)!;
      const value = readScalar(spec, view, offsets.get(biasName)!);
      name = `${biasName}/broadcast_${channels}`;
      made.set(key, name);
      newSpecs.push({name, shape: [channels], dtype: 'float32'});
      newBytes.push(new Float32Array(channels).fill(value));
      newNodes.push({
        name, op: 'Const',
        attr: {value: {tensor: {dtype: 'DT_FLOAT', tensorShape: {dim: [{size: String(channels)}]}}}, dtype: {type: 'DT_FLOAT'}},
      });
    }
    return {...node, input: [node.input![0], node.input![1], name, ...node.input!.slice(3)]};
  });
  if (newSpecs.length === 0) return artifacts;
  const buffers = [weightData, ...newBytes.map((b) => b.buffer as ArrayBuffer)];
  return {
    ...artifacts,
    modelTopology: {...topology, node: [...nodes, ...newNodes]},
    weightSpecs: [...specs, ...newSpecs],
    weightData: tf.io.concatenateArrayBuffers(buffers),
  };
}
