/**
 * useBioClip: a thin hook over load(). The BioClip is loaded when the source changes and
 * disposed when it changes again or the component unmounts (also when that happens while
 * loading, so a fast remount never leaks a model).
 *
 * The source is the LoadOptions themselves, a promise of them, or a function returning them
 * (or a promise of them). The last two let the options wait for something asynchronous, such
 * as a bundled asset's bytes (`() => bundledLoadOptions({...})` in react-bio-clip/native);
 * the function is called once per load, inside the effect.
 *
 * Keep the source stable (a module constant, useMemo or useCallback): the hook reloads when a
 * function or promise source changes identity, or, for plain options, when `model`, `labels`,
 * `manifest`, `resize` or `skipWarmup` do.
 */
import {useEffect, useMemo, useState} from 'react';

import {BioClipInputError} from '../errors';
import {load} from '../load';
import {LOAD_OPTIONS, optionsError} from '../options';
import {BioClip, LoadOptions} from '../types';

export type BioClipStatus = 'loading' | 'ready' | 'error';

/** What useBioClip loads from. */
export type BioClipSource = LoadOptions | PromiseLike<LoadOptions> | (() => LoadOptions | PromiseLike<LoadOptions>);

export interface UseBioClipResult {
  /** The loaded model, null until status is 'ready'. */
  model: BioClip | null;
  status: BioClipStatus;
  /** What went wrong (a BioClipError for the expected failures), null otherwise. */
  error: Error | null;
}

function isDeferred(source: BioClipSource): source is PromiseLike<LoadOptions> | (() => LoadOptions | PromiseLike<LoadOptions>) {
  return typeof source === 'function' ||
      (!!source && typeof (source as PromiseLike<LoadOptions>).then === 'function');
}

export function useBioClip(source: BioClipSource): UseBioClipResult {
  const deferred = isDeferred(source) ? source : null;
  const options = deferred ? null : source as LoadOptions;
  if (!deferred && (!options || typeof options !== 'object')) {
    throw new BioClipInputError(
        'useBioClip: pass the load options, a promise of them or a function returning them');
  }
  const {model, labels, manifest, resize, skipWarmup, onWarning} = options ?? ({} as Partial<LoadOptions>);
  // Only the known options are passed on, so a misspelt one is reported here (as status
  // 'error'); a deferred source's options are checked by load() itself.
  const optionNames = options ? Object.keys(options).join(',') : '';
  const nameError = useMemo(
      () => (options ? optionsError(options, LOAD_OPTIONS, 'useBioClip') : null),
      [optionNames]);  // eslint-disable-line react-hooks/exhaustive-deps
  // Same number of deps on every render, whichever kind of source it is.
  const stableSource = useMemo<BioClipSource>(
      () => deferred ?? ({model, labels, manifest, resize, skipWarmup, onWarning} as LoadOptions),
      [deferred, model, labels, manifest, resize, skipWarmup, onWarning]);
  const [state, setState] = useState<UseBioClipResult>({model: null, status: 'loading', error: null});

  useEffect(() => {
    let cancelled = false;
    let loaded: BioClip | null = null;
    if (nameError) {
      setState({model: null, status: 'error', error: nameError});
      return undefined;
    }
    setState({model: null, status: 'loading', error: null});
    new Promise<LoadOptions>((resolve) => {
      resolve(typeof stableSource === 'function' ? stableSource() : stableSource);
    })
        .then((resolved) => (cancelled ? null : load(resolved)))
        .then(
            (bioClip) => {
              if (!bioClip) return;
              if (cancelled) {
                bioClip.dispose();
                return;
              }
              loaded = bioClip;
              setState({model: bioClip, status: 'ready', error: null});
            },
            (error: Error) => {
              if (!cancelled) setState({model: null, status: 'error', error});
            });
    return () => {
      cancelled = true;
      if (loaded) loaded.dispose();
    };
  }, [stableSource, nameError]);

  return state;
}
