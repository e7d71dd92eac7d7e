"""`keras.ops` math extras: special functions, segments, top-k, FFTs and STFT."""

import torch

from keramic.ops.convert import to_tensor
from keramic.ops.node import keras_op
from keramic.ops.numpy import _float_input

_t = to_tensor


@keras_op
def erf(x):
    return torch.erf(_float_input(x))


@keras_op
def erfc(x):
    return torch.erfc(_float_input(x))


@keras_op
def erfinv(x):
    return torch.erfinv(_float_input(x))


@keras_op
def rsqrt(x):
    return torch.rsqrt(_float_input(x))


@keras_op
def logsumexp(x, axis=None, keepdims=False):
    x = _float_input(x)
    dims = tuple(range(x.dim())) if axis is None else (tuple(axis) if isinstance(axis, (list, tuple)) else axis)
    return torch.logsumexp(x, dim=dims, keepdim=keepdims)


@keras_op
def logdet(x):
    return torch.logdet(_float_input(x))


@keras_op
def cdist(x, y):
    x, y = _float_input(x), _float_input(y)
    if x.dtype in (torch.float16, torch.bfloat16):  # no half-precision cdist kernel on the CPU
        return torch.cdist(x.float(), y.float()).to(x.dtype)
    return torch.cdist(x, y)


def _segment(reduce, empty):
    def op(data, segment_ids, num_segments=None, sorted=False):  # noqa: A002
        data, ids = _t(data), _t(segment_ids).to(torch.int64)
        if num_segments is None:
            num_segments = int(ids.max().item()) + 1 if ids.numel() else 0
        shape = (num_segments,) + tuple(data.shape[1:])
        valid = (ids >= 0) & (ids < num_segments)
        data, ids = data[valid], ids[valid]
        index = ids.reshape((-1,) + (1,) * (data.dim() - 1)).expand_as(data)
        if reduce == "sum":
            return torch.zeros(shape, dtype=data.dtype, device=data.device).scatter_add_(0, index, data)
        out = torch.full(shape, empty(data.dtype), dtype=data.dtype, device=data.device)
        return out.scatter_reduce_(0, index, data, reduce=reduce, include_self=reduce == "prod")

    return op


def _lowest(dtype):
    # Keras (torch backend) leaves an empty segment's max at -inf, not TensorFlow's lowest float.
    if dtype == torch.bool:
        return False
    return -float("inf") if dtype.is_floating_point else torch.iinfo(dtype).min


def _highest(dtype):
    return float("inf") if dtype.is_floating_point else torch.iinfo(dtype).max


segment_sum = _segment("sum", lambda dtype: 0)
segment_sum.__name__ = "segment_sum"
segment_sum = keras_op(segment_sum)
segment_max = _segment("amax", _lowest)
segment_max.__name__ = "segment_max"
segment_max = keras_op(segment_max)
segment_min = _segment("amin", _highest)
segment_min.__name__ = "segment_min"
segment_min = keras_op(segment_min)
segment_prod = _segment("prod", lambda dtype: 1)
segment_prod.__name__ = "segment_prod"
segment_prod = keras_op(segment_prod)


@keras_op
def top_k(x, k, sorted=True):  # noqa: A002
    values, indices = torch.topk(_t(x), k, dim=-1, sorted=sorted)
    return values, indices


@keras_op
def in_top_k(targets, predictions, k):
    predictions = _t(predictions)
    targets = _t(targets).to(torch.int64)
    target_values = torch.gather(predictions, 1, targets[:, None])
    better = torch.sum((predictions > target_values).to(torch.int64), dim=1)
    return better < k


@keras_op
def extract_sequences(x, sequence_length, sequence_stride):
    return _t(x).unfold(-1, sequence_length, sequence_stride)


@keras_op
def fft(x):
    real, imag = x
    out = torch.fft.fft(torch.complex(_float_input(real), _float_input(imag)))
    return out.real, out.imag


@keras_op
def fft2(x):
    real, imag = x
    out = torch.fft.fft2(torch.complex(_float_input(real), _float_input(imag)))
    return out.real, out.imag


@keras_op
def ifft2(x):
    real, imag = x
    out = torch.fft.ifft2(torch.complex(_float_input(real), _float_input(imag)))
    return out.real, out.imag


@keras_op
def rfft(x, fft_length=None):
    out = torch.fft.rfft(_float_input(x), n=fft_length)
    return out.real, out.imag


@keras_op
def irfft(x, fft_length=None):
    real, imag = x
    return torch.fft.irfft(torch.complex(_float_input(real), _float_input(imag)), n=fft_length)


def _window(window, length, dtype, device):
    if window is None:
        return None
    if isinstance(window, str):
        maker = {"hann": torch.hann_window, "hamming": torch.hamming_window}[window]
        return maker(length, periodic=True, dtype=dtype, device=device)
    return _t(window, dtype)


@keras_op
def stft(x, sequence_length, sequence_stride, fft_length, window="hann", center=True):
    x = _float_input(x)
    win = _window(window, sequence_length, x.dtype, x.device)
    if win is not None and sequence_length < fft_length:
        left = (fft_length - sequence_length) // 2
        win = torch.nn.functional.pad(win, (left, fft_length - sequence_length - left))
    flat = x.reshape(-1, x.shape[-1])
    out = torch.stft(flat, fft_length, hop_length=sequence_stride, win_length=fft_length, window=win,
                     center=center, pad_mode="reflect", return_complex=True, onesided=True)
    out = out.transpose(-1, -2).reshape(x.shape[:-1] + out.shape[-1:] + out.shape[-2:-1])
    return out.real, out.imag


@keras_op
def istft(x, sequence_length, sequence_stride, fft_length, length=None, window="hann", center=True):
    real, imag = x
    spectrum = torch.complex(_float_input(real), _float_input(imag))
    win = _window(window, sequence_length, spectrum.real.dtype, spectrum.device)
    if win is not None and sequence_length < fft_length:
        left = (fft_length - sequence_length) // 2
        win = torch.nn.functional.pad(win, (left, fft_length - sequence_length - left))
    flat = spectrum.reshape((-1,) + spectrum.shape[-2:]).transpose(-1, -2)
    out = torch.istft(flat, fft_length, hop_length=sequence_stride, win_length=fft_length, window=win,
                      center=center, length=length)
    return out.reshape(spectrum.shape[:-2] + out.shape[-1:])


@keras_op
def view_as_complex(x):
    return torch.view_as_complex(_t(x).contiguous())


@keras_op
def view_as_real(x):
    return torch.view_as_real(_t(x))


__all__ = [n for n, v in list(globals().items()) if not n.startswith("_") and callable(v) and getattr(v, "__module__", None) == __name__]
