/**
 * <BioClipCamera>: the phone camera, classified every `intervalMs`.
 *
 * Route (Expo SDK 57/58): expo-camera's <CameraView> owns the camera; expo-gl's
 * `GLView.createCameraTextureAsync(cameraView)` streams it into a GL texture (expo-camera 57's
 * CameraView implements EXCameraInterface on iOS and CameraViewInterface.setPreviewTexture on
 * Android, which is what expo-gl attaches to); tfjs-react-native's `fromTexture` reads that
 * texture at its full size into a tf.Tensor3D and `renderToGLView` draws the preview. The loop
 * is this package's own: tfjs-react-native's `cameraWithTensors` wraps the removed class
 * `Camera` (in expo-camera 57 `Camera` is a plain object) and reads `Camera.Constants.Type`.
 *
 * Frame -> model input goes through the core's `squashResize`, the same function that
 * preprocesses photos, so camera frames get the training geometry (the whole frame squashed to
 * R x R, antialiased) rather than tfjs-react-native's bilinear GPU resize.
 *
 * Leak rules (every frame is a tensor):
 *   - a frame is read only when a classification is due (at most one every `intervalMs`), and
 *     at most one classification is in flight;
 *   - the full-size frame is disposed as soon as it is squashed, the R x R input as soon as its
 *     classification settles, success or error;
 *   - unmount cancels the pending animation frame, stops the loop, drops a classification still
 *     in flight (its tensor still disposed) and destroys the GL context.
 */
import * as tf from '@tensorflow/tfjs';
import * as React from 'react';
import {Platform, View} from 'react-native';
import {CameraView} from 'expo-camera';
import {GLView} from 'expo-gl';
import {detectGLCapabilities, fromTexture, renderToGLView} from '@tensorflow/tfjs-react-native';

import {squashResize} from '../preprocess';
import {BioClip, Classification, ClassifyOptions} from '../types';

export type CameraRotation = 0 | 90 | 180 | 270 | -90 | -180 | -270;

export interface BioClipCameraProps {
  /** A loaded BioClip (e.g. useBioClip().model); the camera shows but does not classify while null. */
  model: BioClip | null;
  onClassification: (classification: Classification) => void;
  onError?: (error: Error) => void;
  /** Least time between two classifications, ms. Default 500. */
  intervalMs?: number;
  classifyOptions?: ClassifyOptions;
  /** 'back' (default) or 'front'. */
  facing?: 'back' | 'front';
  /**
   * Size of the camera's GL texture in pixels. expo-gl cannot report it; 1080 x 1920 (the
   * default) is typical for a portrait phone. The whole texture is read and squashed.
   */
  cameraTextureWidth?: number;
  cameraTextureHeight?: number;
  /** Rotation applied when reading the texture and drawing the preview (Android sensors). */
  rotation?: CameraRotation;
  /**
   * Draw the camera texture into a GLView over the CameraView (default true), as
   * tfjs-react-native's camera did: once expo-gl takes the camera's frames, the CameraView's own
   * preview may stop updating.
   */
  showPreview?: boolean;
  /** Style of the outer view (the camera and the GL preview fill it). Default {flex: 1}. */
  style?: Record<string, unknown>;
  /** Other props for expo-camera's CameraView. */
  cameraProps?: Record<string, unknown>;
}

const DEFAULT_INTERVAL_MS = 500;
const FILL = {position: 'absolute', left: 0, top: 0, right: 0, bottom: 0};
const HIDDEN = {position: 'absolute', left: 0, top: 0, width: 1, height: 1, opacity: 0};

interface GLContext extends WebGL2RenderingContext {
  endFrameEXP(): void;
}

interface GLViewHandle {
  createCameraTextureAsync(camera: unknown): Promise<WebGLTexture>;
  destroyObjectAsync?(object: WebGLTexture): Promise<boolean>;
}

/** State of one mounted camera's loop; lives in a ref so new props never restart it. */
interface LoopState {
  frame: number | null;
  stopped: boolean;
  busy: boolean;
  last: number;
  gl: GLContext | null;
}

export function BioClipCamera(props: BioClipCameraProps): React.ReactElement {
  const {facing = 'back', style, cameraProps} = props;
  const latest = React.useRef(props);
  latest.current = props;
  const camera = React.useRef<unknown>(null);
  const glView = React.useRef<GLViewHandle | null>(null);
  const loop = React.useRef<LoopState>({frame: null, stopped: false, busy: false, last: -Infinity, gl: null});

  React.useEffect(() => {
    const state = loop.current;
    state.stopped = false;
    return () => {
      state.stopped = true;
      if (state.frame !== null) cancelAnimationFrame(state.frame);
      state.frame = null;
      if (state.gl) void GLView.destroyContextAsync(state.gl as never);
      state.gl = null;
    };
  }, []);

  const onContextCreate = React.useCallback(async (gl: GLContext) => {
    const state = loop.current;
    if (state.stopped) return;
    state.gl = gl;
    let texture: WebGLTexture;
    try {
      if (!glView.current || !camera.current) throw new Error('the CameraView or GLView is not mounted');
      texture = await glView.current.createCameraTextureAsync(camera.current);
      await detectGLCapabilities(gl);
    } catch (error) {
      if (!state.stopped) latest.current.onError?.(error as Error);
      return;
    }
    const tick = () => {
      state.frame = null;
      if (state.stopped) return;
      const current = latest.current;
      const rotation = current.rotation ?? 0;
      if (current.showPreview !== false) {
        const flip = !(Platform.OS === 'ios' && (current.facing ?? 'back') === 'front');
        renderToGLView(gl, texture, {width: gl.drawingBufferWidth, height: gl.drawingBufferHeight}, flip,
                       rotation as never);
        gl.endFrameEXP();
      }
      const bioClip = current.model;
      const now = Date.now();
      if (bioClip && !state.busy && now - state.last >= (current.intervalMs ?? DEFAULT_INTERVAL_MS)) {
        state.busy = true;
        state.last = now;
        let input: tf.Tensor3D | null = null;
        try {
          const width = current.cameraTextureWidth ?? 1080;
          const height = current.cameraTextureHeight ?? 1920;
          const quarter = Math.abs(rotation) % 180 === 90;
          // RGBA: readable on every GL (RGB reads are not); squashResize drops the alpha.
          const frame = fromTexture(gl, texture, {width, height, depth: 4},
                                    {width: quarter ? height : width, height: quarter ? width : height, depth: 4},
                                    false, {rotation: rotation as never});
          try {
            input = squashResize(frame, bioClip.resolution);
          } finally {
            frame.dispose();
          }
        } catch (error) {
          state.busy = false;
          current.onError?.(error as Error);
        }
        if (input) {
          const modelInput = input;
          bioClip.classify(modelInput, current.classifyOptions)
              .then((result) => {
                if (!state.stopped) latest.current.onClassification(result);
              }, (error: Error) => {
                if (!state.stopped) latest.current.onError?.(error);
              })
              .finally(() => {
                modelInput.dispose();
                state.busy = false;
              });
        }
      }
      state.frame = requestAnimationFrame(tick);
    };
    tick();
  }, []);

  return React.createElement(
      View as unknown as React.ElementType, {style: style ?? {flex: 1}},
      React.createElement(CameraView as unknown as React.ElementType,
                          {...cameraProps, facing, style: FILL, ref: camera}),
      // Without the preview the GL view only hosts the context: 1 x 1, so the CameraView shows.
      React.createElement(GLView as unknown as React.ElementType,
                          {style: props.showPreview === false ? HIDDEN : FILL, onContextCreate, ref: glView}));
}
