export {useBioClip} from './use_bio_clip';
export type {BioClipStatus, UseBioClipResult} from './use_bio_clip';
