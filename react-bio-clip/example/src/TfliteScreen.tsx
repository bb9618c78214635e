import {useEffect, useState} from 'react';
import {Button, Text, View} from 'react-native';
import type {BioClip} from 'react-bio-clip';
import {bundledLabels} from 'react-bio-clip/native';
import {loadTflite} from 'react-bio-clip/tflite';

import {bundledExport, bundledTflite} from '../bundled_export';
import {describeBest} from './describe';
import {pickPhotos} from './pick';

/**
 * The same photo classification, with the image model in TFLite (react-native-fast-tflite, the
 * export's tflite/model_int8.tflite bundled by Metro: "tflite" in metro.config.js assetExts)
 * instead of TF.js. Label bank, hierarchy, `best`, `restrictTo` and few-shot are the package's
 * own, as on the TF.js screens.
 */
export function TfliteScreen() {
  const [model, setModel] = useState<BioClip | null>(null);
  const [status, setStatus] = useState('loading the TFLite model...');
  const [answer, setAnswer] = useState('');
  useEffect(() => {
    let alive = true;
    let loaded: BioClip | null = null;
    (async () => {
      // The manifest and label bank are the TF.js screens' own; only the model source differs.
      const labels = await bundledLabels(bundledExport);
      loaded = await loadTflite({model: bundledTflite, labels, manifest: bundledExport.manifest, delegates: []});
      if (alive) {
        setModel(loaded);
        setStatus('TFLite (XNNPACK on the CPU)');
      } else {
        loaded.dispose();
      }
    })().catch((e) => alive && setStatus(`could not load the TFLite model: ${(e as Error).message}`));
    return () => {
      alive = false;
      loaded?.dispose();
    };
  }, []);
  const classifyPhoto = async () => {
    if (!model) return;
    const [photo] = await pickPhotos(false);
    if (!photo) return;
    try {
      const t0 = Date.now();
      const c = await model.classify(photo, {topK: 5});
      setAnswer(`${describeBest(c)} (${Date.now() - t0} ms)\n` +
                c.species.map((s) => `${s.name} ${s.probability.toFixed(3)}`).join('\n'));
    } catch (e) {
      setAnswer(`error: ${(e as Error).message}`);
    } finally {
      photo.dispose();
    }
  };
  return <View style={{flex: 1, padding: 16}}>
    <Text>{status}</Text>
    <Button title="Pick a photo (TFLite)" disabled={!model} onPress={classifyPhoto} />
    <Text>{answer}</Text>
  </View>;
}
