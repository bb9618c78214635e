export {BioClipCamera} from './bio_clip_camera';
export type {BioClipCameraProps} from './bio_clip_camera';
export {bundledModel, loadBundled} from './bundled_model';
export type {BundledExport} from './bundled_model';
export {useBioClip} from '../react/use_bio_clip';
export type {BioClipStatus, UseBioClipResult} from '../react/use_bio_clip';
