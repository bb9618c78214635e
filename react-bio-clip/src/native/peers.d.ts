/**
 * Compile-time stand-ins for the React Native peers, which are deliberately NOT installed in
 * this package's node_modules (the tests prove the core runs without them). Only the few
 * members this package uses are declared; apps get the real types from their own installs
 * (example/ type-checks against them). This file is not emitted to dist.
 */
declare module '@tensorflow/tfjs-react-native' {
  import type * as tf from '@tensorflow/tfjs';
  export function bundleResourceIO(modelJson: tf.io.ModelJSON, modelWeightsId: number | number[]): tf.io.IOHandler;
  export function detectGLCapabilities(gl: WebGL2RenderingContext): Promise<void>;
  export function fromTexture(
      gl: WebGL2RenderingContext, texture: WebGLTexture, sourceDims: {width: number; height: number; depth: number},
      targetShape: {width: number; height: number; depth: number}, useCustomShadersToResize?: boolean,
      options?: {alignCorners?: boolean; interpolation?: 'nearest_neighbor' | 'bilinear'; rotation?: number}): tf.Tensor3D;
  export function renderToGLView(
      gl: WebGL2RenderingContext, texture: WebGLTexture, size: {width: number; height: number},
      flipHorizontal?: boolean, rotation?: number): void;
}

declare module 'expo-camera' {
  import type * as React from 'react';
  export const CameraView: React.ComponentType<Record<string, unknown>>;
}

declare module 'expo-gl' {
  import type * as React from 'react';
  export const GLView: React.ComponentType<Record<string, unknown>> & {
    destroyContextAsync(gl?: unknown): Promise<boolean>;
  };
}

declare module 'expo-asset' {
  export class Asset {
    static fromModule(virtualAssetModule: number | string): Asset;
    localUri: string | null;
    downloadAsync(): Promise<this>;
  }
}

declare module 'expo-file-system' {
  export class File {
    constructor(...uris: string[]);
    arrayBuffer(): Promise<ArrayBuffer>;
  }
}

declare module 'react-native' {
  import type * as React from 'react';
  export const Platform: {OS: string};
  export const View: React.ComponentType<Record<string, unknown>>;
}
