import * as tf from '@tensorflow/tfjs';
import {decodeJpeg} from '@tensorflow/tfjs-react-native';
import * as ImagePicker from 'expo-image-picker';
import {File} from 'expo-file-system';

/**
 * Lets the user pick photos; returns them decoded as int32 tf.Tensor3D [H, W, 3] (the caller
 * disposes them). tfjs-react-native's decodeJpeg reads JPEG only, so iOS is asked for its
 * 'compatible' representation (HEIC photos come as JPEG).
 */
export async function pickPhotos(multiple: boolean): Promise<tf.Tensor3D[]> {
  const result = await ImagePicker.launchImageLibraryAsync({
    mediaTypes: ['images'], allowsMultipleSelection: multiple, quality: 1,
    preferredAssetRepresentationMode: ImagePicker.UIImagePickerPreferredAssetRepresentationMode.Compatible,
  });
  if (result.canceled) return [];
  const photos: tf.Tensor3D[] = [];
  for (const asset of result.assets) {
    const bytes = new Uint8Array(await new File(asset.uri).arrayBuffer());
    photos.push(decodeJpeg(bytes, 3));
  }
  return photos;
}
