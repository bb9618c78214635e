import {useState} from 'react';
import {Button, Text, TextInput, View} from 'react-native';
import type {BioClip} from 'react-bio-clip';

import {pickPhotos} from './pick';

/** Few-shot: a few photos of your own taxon (addTaxon), then photos scored against it (userTaxa). */
export function FewShotScreen({model}: {model: BioClip | null}) {
  const [name, setName] = useState('my garden snail');
  const [log, setLog] = useState('');
  const teach = async () => {
    if (!model) return;
    const photos = await pickPhotos(true);
    if (photos.length === 0) return;
    try {
      await model.addTaxon(name, photos);
      setLog(`taught "${name}" from ${photos.length} photo(s); your taxa: ${model.userTaxa.join(', ')}`);
    } catch (e) {
      setLog(`error: ${(e as Error).message}`);
    } finally {
      photos.forEach((p) => p.dispose());
    }
  };
  const test = async () => {
    if (!model) return;
    const [photo] = await pickPhotos(false);
    if (!photo) return;
    try {
      const c = await model.classify(photo);
      setLog(c.userTaxa.map((t) => `${t.name}: similarity ${t.similarity.toFixed(3)}, p ${t.probability.toFixed(2)}`).join('\n') || 'no user taxa yet');
    } catch (e) {
      setLog(`error: ${(e as Error).message}`);
    } finally {
      photo.dispose();
    }
  };
  return <View style={{flex: 1, padding: 16}}>
    <TextInput value={name} onChangeText={setName} style={{borderWidth: 1, padding: 4}} />
    <Button title="Teach from photos" disabled={!model} onPress={teach} />
    <Button title="Classify a photo" disabled={!model} onPress={test} />
    <Text>{log}</Text>
  </View>;
}
