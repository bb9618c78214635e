/**
 * react-bio-clip/tflite: the export's TFLite int8 model through react-native-fast-tflite (an
 * optional peer: v3, Nitro modules, with its Expo config plugin), with the same label bank,
 * hierarchy, `best`, `restrictTo` and few-shot code as the TF.js path.
 */
export {loadTflite, TFLITE_MODEL_PATH} from './load_tflite';
export type {TfliteLoadOptions} from './load_tflite';
export {TfliteEmbedder} from './tflite_embedder';
export type {TensorflowModel, TfliteDelegate, TfliteModelSource, TfliteTensorInfo} from './fast_tflite';
export type {Embedder} from '../embedder';
