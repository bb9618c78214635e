'use strict';
// The outermost edge of react-bio-clip/native, replaced for Node: the modules that need a phone
// (a camera, a GL context, the app bundle's assets, the native file system). Everything behind
// them (the package's own code, TF.js, the model, classify) is real.
//
//   react-native       Platform and the host View (a string element for react-test-renderer)
//   expo-camera        CameraView: a class component, so that a ref reaches its instance
//   expo-gl            GLView: after mount hands onContextCreate a stand-in GL context;
//                      createCameraTextureAsync checks it got the CameraView; destroyContextAsync
//                      is recorded
//   tfjs-react-native  fromTexture returns a REAL int32 tf.Tensor3D of the requested target
//                      shape, filled with random 0..255 values (as the camera texture would be),
//                      and keeps a copy of its values; renderToGLView / detectGLCapabilities are
//                      recorded no-ops; bundleResourceIO is set per test
//   expo-asset         Asset.fromModule(id): a table of asset ids -> real files on disk;
//                      localUri stays null until downloadAsync() (as on a phone)
//   expo-file-system   File(uri).arrayBuffer() reads the file:// path with fs
const Module = require('module');
const fs = require('fs');
const React = require('react');
const tf = require('@tensorflow/tfjs');

const camera = {
  mounted: null, textures: 0, framesRead: 0, reads: [], lastFrameValues: null, previews: 0,
  destroyedContexts: 0, failTexture: null,
};
const assets = {files: new Map(), downloads: 0, reads: 0};

class CameraView extends React.Component {
  render() {
    camera.mounted = this;
    return null;
  }
}

const gl = {drawingBufferWidth: 360, drawingBufferHeight: 640, endFrameEXP() {}};

class GLView extends React.Component {
  componentDidMount() {
    // On a phone the context arrives later, with a native event (after refs are attached).
    queueMicrotask(() => this.props.onContextCreate(gl));
  }
  async createCameraTextureAsync(cameraView) {
    if (camera.failTexture) throw camera.failTexture;
    if (!(cameraView instanceof CameraView)) throw new Error('createCameraTextureAsync needs the CameraView instance');
    camera.textures += 1;
    return {id: camera.textures};
  }
  render() {
    return null;
  }
}
GLView.destroyContextAsync = async () => {
  camera.destroyedContexts += 1;
  return true;
};

function fromTexture(context, texture, source, target, useCustomShaders, options) {
  if (context !== gl || !texture) throw new Error('fromTexture: wrong GL context or texture');
  camera.framesRead += 1;
  camera.reads.push({source, target, useCustomShaders, options});
  const frame = tf.randomUniform([target.height, target.width, target.depth], 0, 256, 'int32');
  camera.lastFrameValues = {values: frame.dataSync().slice(), shape: frame.shape};
  return frame;
}

class Asset {
  static fromModule(id) {
    if (!assets.files.has(id)) throw new Error(`no asset ${id}`);
    const asset = new Asset();
    asset.file = assets.files.get(id);
    asset.localUri = null;
    return asset;
  }
  async downloadAsync() {
    assets.downloads += 1;
    this.localUri = this.file === null ? null : `file://${this.file}`;
    return this;
  }
}

class File {
  constructor(uri) {
    if (!uri.startsWith('file://')) throw new Error(`File: not a file:// URI: ${uri}`);
    this.path = uri.slice('file://'.length);
  }
  async arrayBuffer() {
    assets.reads += 1;
    const bytes = fs.readFileSync(this.path);
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);
  }
}

const mocks = {
  'react-native': {Platform: {OS: 'android'}, View: 'View'},
  'expo-camera': {CameraView, Camera: {requestCameraPermissionsAsync: async () => ({granted: true})}},
  'expo-gl': {GLView},
  '@tensorflow/tfjs-react-native': {
    fromTexture,
    detectGLCapabilities: async () => {},
    renderToGLView: () => {
      camera.previews += 1;
    },
    bundleResourceIO: () => {
      throw new Error('set bundleResourceIO in the test');
    },
  },
  'expo-asset': {Asset},
  'expo-file-system': {File},
};

const resolve = Module._resolveFilename;
Module._resolveFilename = function(request, ...rest) {
  return request in mocks ? `mock:${request}` : resolve.call(this, request, ...rest);
};
for (const [name, exports] of Object.entries(mocks)) {
  require.cache[`mock:${name}`] = {id: `mock:${name}`, filename: `mock:${name}`, loaded: true, exports};
}

module.exports = {mocks, camera, assets, gl, CameraView};
