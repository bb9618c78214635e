// Types of bundled_export.js, which scripts/build_bundles.js generates next to the export it copies.
import type {BundledExport} from 'react-bio-clip/native';

export declare const bundledExport: BundledExport;
/** tflite/model_int8.tflite's Metro asset id, for react-bio-clip/tflite. */
export declare const bundledTflite: number;
