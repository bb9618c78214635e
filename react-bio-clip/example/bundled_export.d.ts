// Types of bundled_export.js, which scripts/build_bundles.js generates next to the export it copies.
import type {BundledExport} from 'react-bio-clip/native';

export declare const bundledExport: BundledExport;
