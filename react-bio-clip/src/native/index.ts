export {BioClipCamera} from './bio_clip_camera';
export type {BioClipCameraProps, CameraRotation} from './bio_clip_camera';
export {bundledAssetBytes, bundledLabels, bundledLoadOptions, bundledModel, loadBundled} from './bundled_model';
export type {BundledExport} from './bundled_model';
export {useBioClip} from '../react/use_bio_clip';
export type {BioClipSource, BioClipStatus, UseBioClipResult} from '../react/use_bio_clip';
