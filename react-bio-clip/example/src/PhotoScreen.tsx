import {useState} from 'react';
import {Button, Switch, Text, View} from 'react-native';
import type {BioClip} from 'react-bio-clip';

import {describeBest} from './describe';
import {pickPhotos} from './pick';

// A regional checklist: names at any rank, full lineage or unambiguous short names. Kept at
// module scope, so its mask is built once and stays on the device.
const CHECKLIST = ['Aves', 'Canidae'];

export function PhotoScreen({model}: {model: BioClip | null}) {
  const [restrict, setRestrict] = useState(false);
  const [answer, setAnswer] = useState('');
  const classifyPhoto = async () => {
    if (!model) return;
    const [photo] = await pickPhotos(false);
    if (!photo) return;
    try {
      const c = await model.classify(photo, {topK: 5, restrictTo: restrict ? CHECKLIST : undefined});
      setAnswer(describeBest(c) + '\n' + c.species.map((s) => `${s.name} ${s.probability.toFixed(3)}`).join('\n'));
    } catch (e) {
      setAnswer(`error: ${(e as Error).message}`);
    } finally {
      photo.dispose();
    }
  };
  return <View style={{flex: 1, padding: 16}}>
    <View style={{flexDirection: 'row', alignItems: 'center'}}>
      <Switch value={restrict} onValueChange={setRestrict} />
      <Text> only {CHECKLIST.join(', ')} (restrictTo)</Text>
    </View>
    <Button title="Pick a photo" disabled={!model} onPress={classifyPhoto} />
    <Text>{answer}</Text>
  </View>;
}
