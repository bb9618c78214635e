/**
 * The part of react-native-fast-tflite (v3, Nitro modules) this entry uses, declared here so
 * the package neither installs nor type-checks against the optional peer. It mirrors
 * `TensorflowModel` (alias of `TfliteModel`) of react-native-fast-tflite 3.x: a structural type,
 * so the real model object fits it.
 */
export type TfliteDataType =
  | 'string' | 'float16' | 'float32' | 'float64' | 'bfloat16' | 'int4' | 'int8' | 'int16' | 'int32'
  | 'int64' | 'uint8' | 'uint16' | 'uint32' | 'uint64' | 'bool' | 'complex64' | 'complex128'
  | 'resource' | 'variant' | 'none';

export interface TfliteTensorInfo {
  name: string;
  dataType: TfliteDataType;
  shape: number[];
}

/** react-native-fast-tflite's TensorflowModel: one loaded .tflite model. */
export interface TensorflowModel {
  readonly delegates?: string[];
  readonly inputs: TfliteTensorInfo[];
  readonly outputs: TfliteTensorInfo[];
  runSync(input: ArrayBuffer[]): ArrayBuffer[];
  run(input: ArrayBuffer[]): Promise<ArrayBuffer[]>;
  /** Nitro hybrid objects free their native memory here (absent on older versions). */
  dispose?(): void;
}

/** What react-native-fast-tflite's loadTensorflowModel takes: `require('./model.tflite')` or a URL. */
export type TfliteModelSource = number | {url: string};

export type TfliteDelegate = 'metal' | 'core-ml' | 'nnapi' | 'android-gpu';

interface FastTfliteModule {
  loadTensorflowModel(source: TfliteModelSource, delegates: TfliteDelegate[]): Promise<TensorflowModel>;
}

/**
 * react-native-fast-tflite, required on first use only: importing react-bio-clip/tflite does not
 * need the native module (tests and type checks run without it).
 */
export function fastTflite(): FastTfliteModule {
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    return require('react-native-fast-tflite') as FastTfliteModule;
  } catch (error) {
    const e = new Error(
        'react-bio-clip/tflite: the optional peer react-native-fast-tflite (>= 3, with react-native-nitro-modules) ' +
        'is not installed; `npx expo install react-native-fast-tflite react-native-nitro-modules`, add its Expo ' +
        'config plugin, and put "tflite" in Metro\'s resolver.assetExts. Or pass an already loaded TensorflowModel ' +
        `as \`model\`. (${(error as Error).message})`);
    (e as Error & {cause?: unknown}).cause = error;
    throw e;
  }
}
