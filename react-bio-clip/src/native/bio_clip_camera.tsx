/**
 * <BioClipCamera>: the phone camera, classified every `intervalMs`.
 *
 * Built on tfjs-react-native's cameraWithTensors(expo-camera's Camera). The GL camera texture
 * is resized on the GPU to R x R (resizeWidth = resizeHeight = the model's resolution: the
 * squash geometry the model expects, no crop) and read out as a tf.Tensor3D only when a
 * classification is due, so frames in between cost nothing.
 *
 * Leak rules (tfjs-react-native's camera leaks when it remounts, and every frame is a tensor):
 *   - a frame tensor is disposed as soon as its classification settles, success or error;
 *   - at most one classification is in flight; frames that arrive meanwhile are not read;
 *   - unmount cancels the pending animation frame and stops the loop, and a classification
 *     still in flight is dropped (its tensor still disposed) instead of calling back.
 */
import * as tf from '@tensorflow/tfjs';
import * as React from 'react';
import {Camera} from 'expo-camera';
import {cameraWithTensors} from '@tensorflow/tfjs-react-native';

import {BioClip, Classification, ClassifyOptions} from '../types';

export interface BioClipCameraProps {
  /** A loaded BioClip (e.g. useBioClip().model); the camera shows but does not classify while null. */
  model: BioClip | null;
  onClassification: (classification: Classification) => void;
  onError?: (error: Error) => void;
  /** Least time between two classifications, ms. Default 500. */
  intervalMs?: number;
  classifyOptions?: ClassifyOptions;
  /**
   * Size of the camera's GL texture. expo cannot report it, so the tfjs-react-native defaults
   * are used: 1080 x 1920 on iOS, 1600 x 1200 on Android is typical; pass yours.
   */
  cameraTextureWidth?: number;
  cameraTextureHeight?: number;
  /** Other props for expo-camera's Camera (style, type, ...). */
  cameraProps?: Record<string, unknown>;
}

const DEFAULT_INTERVAL_MS = 500;

let TensorCamera: React.ComponentType<any> | null = null;

/** Created on first render, not at import, so importing this module has no side effects. */
function tensorCamera(): React.ComponentType<any> {
  if (!TensorCamera) TensorCamera = cameraWithTensors(Camera as React.ComponentType<any>);
  return TensorCamera;
}

export function BioClipCamera(props: BioClipCameraProps): React.ReactElement {
  const {model, cameraTextureWidth = 1080, cameraTextureHeight = 1920, cameraProps} = props;
  // The loop reads the latest props through a ref, so new callbacks never restart the camera.
  const latest = React.useRef(props);
  latest.current = props;
  const loop = React.useRef({frame: 0 as number | null, stopped: false, busy: false, last: -Infinity});

  React.useEffect(() => {
    const state = loop.current;
    state.stopped = false;
    return () => {
      state.stopped = true;
      if (state.frame !== null) cancelAnimationFrame(state.frame);
      state.frame = null;
    };
  }, []);

  const onReady = React.useCallback((images: IterableIterator<tf.Tensor3D>) => {
    const state = loop.current;
    const tick = () => {
      state.frame = null;
      if (state.stopped) return;
      const {model: bioClip, intervalMs: interval = DEFAULT_INTERVAL_MS} = latest.current;
      const now = Date.now();
      if (bioClip && !state.busy && now - state.last >= interval) {
        const frame = images.next().value as tf.Tensor3D | undefined;
        if (frame) {
          state.busy = true;
          state.last = now;
          bioClip.classify(frame, latest.current.classifyOptions)
              .then((result) => {
                if (!state.stopped) latest.current.onClassification(result);
              }, (error: Error) => {
                if (!state.stopped) latest.current.onError?.(error);
              })
              .finally(() => {
                frame.dispose();
                state.busy = false;
              });
        }
      }
      state.frame = requestAnimationFrame(tick);
    };
    tick();
  }, []);

  const Camera = tensorCamera();
  const resolution = model?.resolution ?? 224;
  return React.createElement(Camera, {
    ...cameraProps,
    cameraTextureWidth, cameraTextureHeight,
    resizeWidth: resolution, resizeHeight: resolution, resizeDepth: 3,
    autorender: true,
    onReady,
  });
}
