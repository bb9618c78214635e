// The export's weight shards and label bank are .bin files (and a .tflite, for the
// react-native-fast-tflite route): Metro must bundle them as assets, not as source.
const {getDefaultConfig} = require('expo/metro-config');

const config = getDefaultConfig(__dirname);
config.resolver.assetExts.push('bin', 'tflite');
module.exports = config;
