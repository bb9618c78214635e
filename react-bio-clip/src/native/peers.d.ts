/**
 * Compile-time stand-ins for the React Native peers, which are deliberately NOT installed in
 * this package's node_modules (the tests prove the core runs without them). Only the few
 * members this package uses are declared; apps get the real types from their own installs.
 * This file is not emitted to dist.
 */
declare module '@tensorflow/tfjs-react-native' {
  import type * as tf from '@tensorflow/tfjs';
  import type * as React from 'react';
  export function bundleResourceIO(modelJson: tf.io.ModelJSON, modelWeightsId: number | number[]): tf.io.IOHandler;
  export interface TensorCameraProps {
    cameraTextureWidth: number;
    cameraTextureHeight: number;
    resizeWidth: number;
    resizeHeight: number;
    resizeDepth: number;
    autorender: boolean;
    useCustomShadersToResize?: boolean;
    onReady: (images: IterableIterator<tf.Tensor3D>, updateCameraPreview: () => void, gl: unknown,
              cameraTexture: unknown) => void;
    [prop: string]: unknown;
  }
  export function cameraWithTensors<T>(component: React.ComponentType<T>): React.ComponentType<T & TensorCameraProps>;
}

declare module 'expo-camera' {
  import type * as React from 'react';
  export const Camera: React.ComponentType<Record<string, unknown>>;
}
