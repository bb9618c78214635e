/**
 * useBioClip: a thin hook over load(). The BioClip is loaded when the options change and
 * disposed when they change again or the component unmounts (also when that happens while
 * loading, so a fast remount never leaks a model).
 *
 * Pass stable options (module constants, useMemo, require()d assets): the hook reloads when
 * `model`, `labels`, `manifest` or `resize` change identity.
 */
import {useEffect, useMemo, useState} from 'react';

import {load} from '../load';
import {LOAD_OPTIONS, optionsError} from '../options';
import {BioClip, LoadOptions} from '../types';

export type BioClipStatus = 'loading' | 'ready' | 'error';

export interface UseBioClipResult {
  /** The loaded model, null until status is 'ready'. */
  model: BioClip | null;
  status: BioClipStatus;
  /** What went wrong (a BioClipError for the expected failures), null otherwise. */
  error: Error | null;
}

export function useBioClip(options: LoadOptions): UseBioClipResult {
  const {model, labels, manifest, resize, skipWarmup} = options;
  // Only the known options are passed on, so a misspelt one is reported here (as status 'error').
  const optionNames = Object.keys(options ?? {}).join(',');
  const stableOptions = useMemo<LoadOptions>(
      () => ({model, labels, manifest, resize, skipWarmup}), [model, labels, manifest, resize, skipWarmup]);
  const nameError = useMemo(() => optionsError(options, LOAD_OPTIONS, 'useBioClip'), [optionNames]);  // eslint-disable-line react-hooks/exhaustive-deps
  const [state, setState] = useState<UseBioClipResult>({model: null, status: 'loading', error: null});

  useEffect(() => {
    let cancelled = false;
    let loaded: BioClip | null = null;
    if (nameError) {
      setState({model: null, status: 'error', error: nameError});
      return undefined;
    }
    setState({model: null, status: 'loading', error: null});
    load(stableOptions).then(
        (bioClip) => {
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
  }, [stableOptions, nameError]);

  return state;
}
