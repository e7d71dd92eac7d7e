"""`keras.utils.audio_dataset_from_directory` on WAV files read with Python's `wave` module.

Keras decodes with TensorFlow; keramic reads 16-bit PCM WAV itself, scaled to [-1, 1) float32
as `tf.audio.decode_wav` does, so the same folder gives the same arrays without TensorFlow.
"""

import wave

import numpy as np

from keramic.errors import FileFormatError
from keramic.utils.dataset_utils import ArrayDataset, LazyRows, _encode_labels, _listed_splits


def read_wav(path: str) -> np.ndarray:
    """A 16-bit PCM WAV file -> float32 samples of shape (frames, channels), in [-1, 1)."""
    try:
        with wave.open(path, "rb") as handle:
            width, channels, frames = handle.getsampwidth(), handle.getnchannels(), handle.getnframes()
            raw = handle.readframes(frames)
    except (wave.Error, EOFError) as error:
        raise FileFormatError(f"{path}: not a readable PCM WAV file ({error}).") from error
    if width != 2:
        raise FileFormatError(f"{path}: {8 * width}-bit samples; only 16-bit PCM WAV files are supported.")
    samples = np.frombuffer(raw, dtype="<i2")
    if samples.size != frames * channels:
        raise FileFormatError(f"{path}: the header announces {frames} frames but the file holds {samples.size // channels}.")
    return (samples.reshape(frames, channels).astype("float32") / 32768.0)


def _fit_length(clip, length):
    if len(clip) >= length:
        return clip[:length]
    return np.concatenate([clip, np.zeros((length - len(clip),) + clip.shape[1:], clip.dtype)])


def _pad_batch(audio, *rest):
    """Clips of different lengths in one batch -> zero-padded to the batch's longest clip."""
    if audio.dtype == object and audio.ndim == 1:
        longest = max(len(clip) for clip in audio)
        audio = np.stack([_fit_length(clip, longest) for clip in audio])
    return (audio, *rest) if rest else audio


def _fitted_reader(paths, length):
    return lambda picked: np.stack([_fit_length(read_wav(str(paths[i])), length) for i in picked])


def _clip_reader(paths):
    def read(picked):
        clips = np.empty(len(picked), dtype=object)
        for slot, i in enumerate(picked):
            clips[slot] = read_wav(str(paths[i]))
        return clips

    return read


def audio_dataset_from_directory(directory, labels="inferred", label_mode="int", class_names=None, batch_size=32,
                                 sampling_rate=None, output_sequence_length=None, ragged=False, shuffle=True,
                                 seed=None, validation_split=None, subset=None, follow_links=False, verbose=True):
    """WAV files in `directory/<class>/...` -> batches of (audio (batch, frames, channels), labels).

    Clips are cut or zero-padded to `output_sequence_length` when given, else padded to the
    longest clip of their batch, as Keras does.
    """
    if sampling_rate is not None:
        raise NotImplementedError("audio_dataset_from_directory(sampling_rate=...): resampling is not supported; "
                                  "resample the files beforehand or pass sampling_rate=None.")
    if ragged:
        raise NotImplementedError("audio_dataset_from_directory(ragged=True): ragged tensors do not exist in PyTorch.")
    splits, labels, names = _listed_splits(directory, labels, label_mode, class_names, (".wav",), follow_links, verbose,
                                           validation_split, subset, shuffle, seed)
    datasets = []
    for split_paths, split_values in splits:
        # Clips are read batch by batch, as Keras's tf.data pipeline reads them: a folder of audio
        # need not fit in memory (a file that cannot be read is named when its batch is read).
        if output_sequence_length is not None:
            audio = LazyRows(len(split_paths), _fitted_reader(list(split_paths), output_sequence_length), (output_sequence_length, 1))
            functions: tuple = ()
        else:
            audio = LazyRows(len(split_paths), _clip_reader(list(split_paths)), (), object)
            functions = (_pad_batch,)
        elements = audio if label_mode is None or labels is None else (
            audio, _encode_labels(np.asarray(split_values), label_mode, max(len(names), 1)))
        datasets.append(ArrayDataset(elements, batch_size=batch_size, functions=functions, class_names=names or None))
    return datasets[0] if len(datasets) == 1 else datasets
