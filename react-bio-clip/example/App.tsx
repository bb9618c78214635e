/**
 * react-bio-clip example: three screens on one loaded model.
 *   Camera   - <BioClipCamera>, the README's camera screen
 *   Photo    - pick a photo (expo-image-picker) and classify it, optionally restricted to a
 *              checklist (`restrictTo`)
 *   Few-shot - teach the model your own taxon from a few photos (`addTaxon`), then classify
 *   TFLite   - the Photo screen with the image model in TFLite (react-bio-clip/tflite,
 *              react-native-fast-tflite) instead of TF.js
 *
 * The label bank loads the way that works in release builds: asset id -> bytes, asynchronously
 * (bundledLoadOptions), handed to useBioClip as an async options factory.
 */
import '@tensorflow/tfjs-react-native';
import {useState} from 'react';
import {Button, Text, View} from 'react-native';
import {StatusBar} from 'expo-status-bar';
import {bundledLoadOptions, useBioClip} from 'react-bio-clip/native';

import {bundledExport} from './bundled_export';
import {CameraScreen} from './src/CameraScreen';
import {FewShotScreen} from './src/FewShotScreen';
import {PhotoScreen} from './src/PhotoScreen';
import {TfliteScreen} from './src/TfliteScreen';

// A module-level function (stable identity): useBioClip calls it once, inside its effect.
const loadOptions = () => bundledLoadOptions(bundledExport);

type Screen = 'camera' | 'photo' | 'few-shot' | 'tflite';

export default function App() {
  const {model, status, error} = useBioClip(loadOptions);
  const [screen, setScreen] = useState<Screen>('photo');
  return (
    <View style={{flex: 1, paddingTop: 32}}>
      <StatusBar style="auto" />
      <View style={{flexDirection: 'row', justifyContent: 'space-around', padding: 8}}>
        <Button title="Camera" onPress={() => setScreen('camera')} />
        <Button title="Photo" onPress={() => setScreen('photo')} />
        <Button title="Few-shot" onPress={() => setScreen('few-shot')} />
        <Button title="TFLite" onPress={() => setScreen('tflite')} />
      </View>
      {status === 'error' && <Text style={{padding: 8}}>Could not load the model: {error?.message}</Text>}
      {status === 'loading' && <Text style={{padding: 8}}>Loading the model...</Text>}
      {screen === 'camera' && <CameraScreen model={model} />}
      {screen === 'photo' && <PhotoScreen model={model} />}
      {screen === 'few-shot' && <FewShotScreen model={model} />}
      {screen === 'tflite' && <TfliteScreen />}
    </View>
  );
}
