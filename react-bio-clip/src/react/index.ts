export {useBioClip} from './use_bio_clip';
export type {BioClipSource, BioClipStatus, UseBioClipResult} from './use_bio_clip';
