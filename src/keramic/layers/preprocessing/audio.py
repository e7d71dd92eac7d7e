"""Audio front ends: MelSpectrogram (STFT -> mel filterbank -> dB) and STFTSpectrogram (STFT as a convolution)."""

import math

import torch
import torch.nn.functional as F

from keramic import backend
from keramic.layers.base import Layer
from keramic.serialization.registry import keras_export

# HTK mel scale: mel(f) = 1127 ln(1 + f / 700).
_MEL_BREAK_HZ = 700.0
_MEL_Q = 1127.0
_EPSILON = 1e-7

_WINDOWS = {
    "hann": torch.hann_window,
    "hamming": torch.hamming_window,
    "blackman": torch.blackman_window,
    "bartlett": torch.bartlett_window,
    "boxcar": lambda n, periodic, dtype: torch.ones(n, dtype=dtype),
}


def window(name, length: int, periodic: bool, dtype=torch.float64) -> torch.Tensor:
    """A named window of `length` samples (periodic: the DFT-even variant), as scipy.signal.get_window gives it."""
    if name not in _WINDOWS:
        raise ValueError(f"Unsupported window {name!r}: keramic offers {sorted(_WINDOWS)} (or pass the window values).")
    if length == 1:
        return torch.ones(1, dtype=dtype)
    return _WINDOWS[name](length, periodic=periodic, dtype=dtype)


def _hz_to_mel(hz):
    return _MEL_Q * torch.log1p(hz / _MEL_BREAK_HZ)


def mel_weight_matrix(num_mel_bins, num_spectrogram_bins, sampling_rate, lower_hz, upper_hz, dtype=torch.float32):
    """(num_spectrogram_bins, num_mel_bins) triangular HTK filters, peak 1; the DC bin gets no weight."""
    linear = torch.linspace(0.0, sampling_rate / 2.0, num_spectrogram_bins, dtype=dtype)[1:]
    bins_mel = _hz_to_mel(linear).unsqueeze(1)
    edges = torch.linspace(float(_hz_to_mel(torch.tensor(lower_hz, dtype=dtype))),
                           float(_hz_to_mel(torch.tensor(upper_hz, dtype=dtype))), num_mel_bins + 2, dtype=dtype)
    lower, center, upper = edges[:-2].unsqueeze(0), edges[1:-1].unsqueeze(0), edges[2:].unsqueeze(0)
    weights = torch.clamp(torch.minimum((bins_mel - lower) / (center - lower), (upper - bins_mel) / (upper - center)), min=0.0)
    return F.pad(weights, (0, 0, 1, 0))


@keras_export("keras.layers")
class MelSpectrogram(Layer):
    """Audio `(batch, samples)` -> mel spectrogram `(batch, num_mel_bins, frames)`, in dB by default."""

    _allows_non_tensor_positional_args = True  # as Keras's data layers

    _records_build_config = True  # Keras records a build config for it once called

    def __init__(self, fft_length=2048, sequence_stride=512, sequence_length=None, window="hann", sampling_rate=16000,
                 num_mel_bins=128, min_freq=20.0, max_freq=None, power_to_db=True, top_db=80.0, mag_exp=2.0,
                 min_power=1e-10, ref_power=1.0, **kwargs):
        self.fft_length = fft_length
        self.sequence_stride = sequence_stride
        self.sequence_length = sequence_length or fft_length
        if self.fft_length < self.sequence_length:
            raise ValueError(
                "`fft_length` must be greater than or equal to  `sequence_length`. Received: "
                f"`sequence_length`={self.sequence_length}, `fft_length`={self.fft_length}."
            )
        if window is not None and window not in ("hann", "hamming"):
            raise ValueError(f'If a string is passed to `window`, it must be one of `"hann"`, `"hamming"`. Received: window={window}')
        self.window = window
        self.sampling_rate = sampling_rate
        self.num_mel_bins = num_mel_bins
        self.min_freq = min_freq
        self.max_freq = max_freq or int(sampling_rate / 2)
        self.power_to_db = power_to_db
        self.top_db = top_db
        self.mag_exp = mag_exp
        self.min_power = min_power
        self.ref_power = ref_power
        super().__init__(**kwargs)

    def call(self, inputs):
        dtype = backend.torch_dtype(self.compute_dtype if self.compute_dtype in ("float32", "float64") else "float32")
        x = torch.as_tensor(inputs).to(dtype)
        if self.window is None:
            win = torch.ones(self.sequence_length, dtype=dtype, device=x.device)
        else:
            win = _WINDOWS[self.window](self.sequence_length, periodic=True, dtype=dtype).to(x.device)
        batch_shape = x.shape[:-1]
        flat = x.reshape(-1, x.shape[-1])
        spectrum = torch.stft(flat, n_fft=self.fft_length, hop_length=self.sequence_stride, win_length=self.sequence_length,
                              window=win, center=True, return_complex=True)
        spectrum = spectrum.reshape(*batch_shape, *spectrum.shape[-2:]).transpose(-1, -2)
        power = torch.sqrt(spectrum.real.square() + spectrum.imag.square()) ** self.mag_exp
        matrix = mel_weight_matrix(self.num_mel_bins, power.shape[-1], self.sampling_rate, self.min_freq, self.max_freq, dtype).to(x.device)
        mel = torch.tensordot(power, matrix, dims=1)
        if self.power_to_db:
            mel = 10.0 * torch.log10(torch.clamp(mel, min=self.min_power))
            mel = mel - 10.0 * math.log10(max(abs(self.ref_power), self.min_power))
            mel = torch.maximum(mel, mel.max() - self.top_db)
        return mel.transpose(-1, -2).to(backend.torch_dtype(self.compute_dtype))

    def compute_output_shape(self, input_shape):
        frames = lambda n: (n + self.sequence_stride + 1) // self.sequence_stride if n is not None else None  # noqa: E731
        if len(input_shape) == 1:
            return [self.num_mel_bins, frames(input_shape[0])]
        return [input_shape[0], self.num_mel_bins, frames(input_shape[1])]

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "fft_length": self.fft_length,
                "sequence_stride": self.sequence_stride,
                "sequence_length": self.sequence_length,
                "window": self.window,
                "sampling_rate": self.sampling_rate,
                "num_mel_bins": self.num_mel_bins,
                "min_freq": self.min_freq,
                "max_freq": self.max_freq,
                "power_to_db": self.power_to_db,
                "top_db": self.top_db,
                "mag_exp": self.mag_exp,
                "min_power": self.min_power,
                "ref_power": self.ref_power,
            }
        )
        return config


def stft_kernel(side, window_spec, scaling, periodic, shape, dtype):
    """Keras's STFT initializer: (frame_length, 1, fft_length // 2 + 1) cosine or sine bases times the window."""
    frame_length, _, bins = shape
    kernel_dtype = torch.float64
    time = torch.arange(frame_length, dtype=kernel_dtype).view(-1, 1, 1)
    freq = torch.arange(bins, dtype=kernel_dtype).view(1, 1, -1) / ((bins - 1) * 2)
    angles = -2.0 * time * freq * math.pi
    kernel = torch.cos(angles) if side == "real" else torch.sin(angles)
    if window_spec is not None:
        win = window(window_spec, frame_length, periodic) if isinstance(window_spec, str) else torch.as_tensor(window_spec, dtype=kernel_dtype)
        if win.dim() != 1 or win.shape[0] != frame_length:
            raise ValueError(f"The shape of `window` must be equal to [frame_length]. Received: window shape={tuple(win.shape)}")
        win = win.view(-1, 1, 1).to(kernel_dtype)
        scale = 1.0
        if scaling == "density":
            scale = torch.sqrt(win.square().sum())
        elif scaling == "spectrum":
            scale = win.abs().sum()
        kernel = kernel * win / scale
    return kernel.to(dtype)


@keras_export("keras.layers")
class STFTSpectrogram(Layer):
    """Audio `(batch, time, channels)` -> STFT features, computed as a strided convolution whose kernels
    (`real_kernel`, `imag_kernel`) are weights, as in Keras (so they can be fine-tuned)."""

    def __init__(self, mode="log", frame_length=256, frame_step=None, fft_length=None, window="hann", periodic=False,
                 scaling="density", padding="valid", expand_dims=False, data_format=None, **kwargs):
        if frame_step is not None and (frame_step > frame_length or frame_step < 1):
            raise ValueError(
                "`frame_step` should be a positive integer not greater than `frame_length`. "
                f"Received frame_step={frame_step}, frame_length={frame_length}"
            )
        if fft_length is not None and fft_length < frame_length:
            raise ValueError(f"`fft_length` should be not less than `frame_length`. Received fft_length={fft_length}, frame_length={frame_length}")
        modes = ["log", "magnitude", "psd", "real", "imag", "angle", "stft"]
        if mode not in modes:
            raise ValueError(f"Output mode is invalid, it must be one of {', '.join(modes)}. Received: mode={mode}")
        if scaling is not None and scaling not in ("density", "spectrum"):
            raise ValueError(f"Scaling is invalid, it must be `None`, 'density' or 'spectrum'. Received scaling={scaling}")
        if padding not in ("valid", "same"):
            raise ValueError(f"Padding is invalid, it should be 'valid', 'same'. Received: padding={padding}")
        if isinstance(window, str):
            globals()["window"](window, 1, periodic)  # refuse unknown window names now
        super().__init__(**kwargs)
        self.mode = mode
        self.frame_length = frame_length
        self.frame_step = frame_step
        self._frame_step = frame_step or frame_length // 2
        self.fft_length = fft_length
        self._fft_length = fft_length or 2 ** int(math.ceil(math.log2(frame_length)))
        self.window = window
        self.periodic = periodic
        self.scaling = scaling
        self.padding = padding
        self.expand_dims = expand_dims
        self.data_format = data_format or backend.image_data_format()

    def build(self, input_shape):
        shape = (self.frame_length, 1, self._fft_length // 2 + 1)
        for side in ("real", "imag"):
            if (side == "real" and self.mode == "imag") or (side == "imag" and self.mode == "real"):
                continue
            weight = self.add_weight(name=f"{side}_kernel", shape=shape, initializer="zeros")
            with torch.no_grad():
                weight.copy_(stft_kernel(side, self.window, self.scaling, self.periodic, shape, weight.dtype))
            setattr(self, f"{side}_kernel", weight)

    def _convolve(self, x, kernel):
        """(B, T, C) or (B, C, T) -> (B, C, F, frames): each channel framed by the kernel's strided conv."""
        if self.data_format == "channels_last":
            x = x.transpose(1, 2)
        batch, channels, time = x.shape
        flat = x.reshape(batch * channels, 1, time)
        weight = kernel.to(x.dtype).permute(2, 1, 0)  # (F, 1, frame_length)
        if self.padding == "same":
            total = max((math.ceil(time / self._frame_step) - 1) * self._frame_step + self.frame_length - time, 0)
            flat = F.pad(flat, (total // 2, total - total // 2))
        out = F.conv1d(flat, weight, stride=self._frame_step)
        return out.reshape(batch, channels, out.shape[1], out.shape[2])

    def _arrange(self, out):
        batch, channels, freq, frames = out.shape
        if self.data_format == "channels_last":  # contiguous, as Keras's (a dropout's mask follows the layout)
            if self.expand_dims:
                return out.permute(0, 3, 2, 1).contiguous()
            return out.reshape(batch, channels * freq, frames).transpose(1, 2).contiguous()
        if self.expand_dims:
            return out.permute(0, 1, 3, 2)
        return out.reshape(batch, channels * freq, frames)

    def call(self, inputs):
        x = inputs
        if not x.is_floating_point():
            raise TypeError(f"Invalid input type. Expected `float16`, `float32` or `float64`. Received: input type={x.dtype}")
        real = self._convolve(x, self.real_kernel) if self.mode != "imag" else None
        imag = self._convolve(x, self.imag_kernel) if self.mode != "real" else None
        if self.mode == "real":
            return self._arrange(real)
        if self.mode == "imag":
            return self._arrange(imag)
        if self.mode == "angle":
            return self._arrange(torch.atan2(imag, real))
        if self.mode == "stft":
            return self._arrange(torch.cat([real, imag], dim=2))
        power = real.square() + imag.square()
        if self.mode == "psd":
            return self._arrange(power + F.pad(power[:, :, 1:-1, :], (0, 0, 1, 1)))
        magnitude = self._arrange(torch.sqrt(torch.clamp(power, min=_EPSILON)))
        if self.mode == "magnitude":
            return magnitude
        return torch.log(torch.clamp(magnitude, min=_EPSILON))

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1] if self.data_format == "channels_last" else input_shape[1]
        freq = self._fft_length // 2 + 1
        if self.mode == "stft":
            freq *= 2
        time = input_shape[1] if self.data_format == "channels_last" else input_shape[2]
        if time is not None:
            time = (time - self.frame_length) // self._frame_step + 1 if self.padding == "valid" else math.ceil(time / self._frame_step)
        if self.expand_dims:
            if self.data_format == "channels_last":
                return (input_shape[0], time, freq, channels)
            return (input_shape[0], channels, time, freq)
        if self.data_format == "channels_last":
            return (input_shape[0], time, freq * channels)
        return (input_shape[0], freq * channels, time)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "frame_length": self.frame_length,
                "frame_step": self.frame_step,
                "fft_length": self.fft_length,
                "window": self.window,
                "periodic": self.periodic,
                "scaling": self.scaling,
                "padding": self.padding,
                "data_format": self.data_format,
                "expand_dims": self.expand_dims,
            }
        )
        return config
