import {useState} from 'react';
import {Button, Text, View} from 'react-native';
import {useCameraPermissions} from 'expo-camera';
import type {BioClip} from 'react-bio-clip';
import {BioClipCamera} from 'react-bio-clip/native';

import {describeBest} from './describe';

export function CameraScreen({model}: {model: BioClip | null}) {
  const [permission, requestPermission] = useCameraPermissions();
  const [answer, setAnswer] = useState('');
  if (!permission) return <View style={{flex: 1}} />;
  if (!permission.granted) {
    return <View style={{flex: 1, padding: 16}}>
      <Text>The camera screen needs the camera.</Text>
      <Button title="Allow the camera" onPress={requestPermission} />
    </View>;
  }
  return <View style={{flex: 1}}>
    <BioClipCamera model={model} intervalMs={500} style={{flex: 1}}
      onClassification={(c) => setAnswer(describeBest(c))}
      onError={(e) => setAnswer(`error: ${e.message}`)} />
    <Text style={{padding: 8}}>{model ? answer : 'loading...'}</Text>
  </View>;
}
