"""Audio views on the batch's device: spectrograms, SpecAugment and volume jitter.

Waveforms are float32 ``B×N`` in [-1, 1] (mono); spectrograms are ``B×1×time×freq``
(docs/interfaces.md). Written with plain torch (torchaudio is not a dependency), so the
filterbanks below reproduce the seeds' own front ends exactly:

* :class:`LogMelSpectrogram` — BraVe (``brave/datasets/spectrograms.py``): TF's STFT
  (frame 320, step 160, FFT 320, periodic Hann, ``pad_end``), the **magnitude**, TF's HTK
  mel matrix (80 bins, 80–7600 Hz, DC bin zeroed) and ``log(1 + 1e4·x)``.
* :class:`LogFilterbank` — GDT (``python_speech_features.logfbank`` as GDT calls it: 24 kHz,
  20 ms rectangular windows every 10 ms, FFT 1024, pre-emphasis 0.97, 40 filters on
  0–12 kHz, log of the power), z-normalised with GDT's constants.

Example:
    >>> import torch
    >>> wave = torch.zeros(2, 48000)
    >>> LogMelSpectrogram()(wave).shape  # 1 s at 48 kHz: ceil(48000 / 160) frames
    torch.Size([2, 1, 300, 80])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vidssl.data.transforms import uniform


def _check_waveform(wave: Tensor) -> None:
    if wave.dim() != 2 or not wave.is_floating_point():
        raise ValueError(f"expected a float waveform batch B×N, got {tuple(wave.shape)} {wave.dtype}")


def _check_spectrogram(spec: Tensor) -> None:
    if spec.dim() != 4 or spec.shape[1] != 1:
        raise ValueError(f"expected spectrograms B×1×time×freq, got {tuple(spec.shape)}")


# --------------------------------------------------------------------------------------
# BraVe: log-mel of the STFT magnitude


def hz_to_mel_htk(hz: Tensor) -> Tensor:
    """HTK mel scale as TF uses it: ``1127 · ln(1 + hz / 700)``."""
    return 1127.0 * torch.log1p(hz / 700.0)


def linear_to_mel_weight_matrix(
    num_mel_bins: int = 80,
    num_spectrogram_bins: int = 161,
    sample_rate: int = 48000,
    lower_edge_hz: float = 80.0,
    upper_edge_hz: float = 7600.0,
) -> Tensor:
    """``tf.signal.linear_to_mel_weight_matrix``: ``num_spectrogram_bins × num_mel_bins`` float32.

    Triangles are built in mel space over ``num_mel_bins + 2`` evenly spaced mel edges; the
    DC bin gets zero weight. With a coarse FFT some narrow low bands contain no FFT bin at
    all and stay zero (16 of 80 at 48 kHz with a 320-point FFT; none at 16 kHz).
    """
    if not 0 <= lower_edge_hz < upper_edge_hz <= sample_rate / 2:
        raise ValueError(
            "need 0 <= lower_edge_hz < upper_edge_hz <= sample_rate/2, "
            f"got {lower_edge_hz}, {upper_edge_hz}, {sample_rate}"
        )
    linear_hz = torch.linspace(0.0, sample_rate / 2, num_spectrogram_bins, dtype=torch.float64)[1:]
    bins_mel = hz_to_mel_htk(linear_hz)[:, None]
    edges = torch.linspace(
        hz_to_mel_htk(torch.tensor(lower_edge_hz, dtype=torch.float64)).item(),
        hz_to_mel_htk(torch.tensor(upper_edge_hz, dtype=torch.float64)).item(),
        num_mel_bins + 2,
        dtype=torch.float64,
    )
    lower, centre, upper = edges[:-2][None], edges[1:-1][None], edges[2:][None]
    rising = (bins_mel - lower) / (centre - lower)
    falling = (upper - bins_mel) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    return F.pad(weights, (0, 0, 1, 0)).float()  # zero row for the DC bin


def frame_signal(wave: Tensor, frame_length: int, frame_step: int, pad_end: bool) -> Tensor:
    """``tf.signal.frame``: ``B×N`` → ``B×frames×frame_length``.

    With ``pad_end`` there are ``ceil(N / frame_step)`` frames, zero-padded at the end;
    without it only the frames that fit completely.
    """
    length = wave.shape[-1]
    if pad_end:
        frames = -(-length // frame_step)
        needed = (frames - 1) * frame_step + frame_length
        wave = F.pad(wave, (0, max(0, needed - length)))
    elif length < frame_length:
        raise ValueError(f"waveform of {length} samples is shorter than one frame ({frame_length})")
    return wave.unfold(-1, frame_length, frame_step)


class LogMelSpectrogram(nn.Module):
    """BraVe's broad-view audio input: waveform ``B×N`` → log-mel ``B×1×time×mel``.

    ``time = ceil(N / frame_step)``: 10.24 s at 48 kHz (491,520 samples) gives
    ``[3072, 80]``. Values are ``log(1 + log_scale · mel(|STFT|))``.

    Note (kept for fidelity, BraVe's training config): at 48 kHz a 320-point FFT has
    150 Hz bins, so 16 of the 80 mel bands (all below ~1.3 kHz) contain no bin and are
    always 0. At 16 kHz (BraVe's unit-test rate) no band is empty.
    """

    def __init__(
        self,
        sample_rate: int = 48000,
        frame_length: int = 320,
        frame_step: int = 160,
        fft_length: int = 320,
        num_mel_bins: int = 80,
        lower_edge_hz: float = 80.0,
        upper_edge_hz: float = 7600.0,
        log_scale: float = 1e4,
    ):
        super().__init__()
        if fft_length < frame_length:
            raise ValueError(f"fft_length ({fft_length}) must be >= frame_length ({frame_length})")
        self.frame_length, self.frame_step, self.fft_length = frame_length, frame_step, fft_length
        self.log_scale, self.sample_rate = log_scale, sample_rate
        self.register_buffer("window", torch.hann_window(frame_length, periodic=True), persistent=False)
        mel = linear_to_mel_weight_matrix(num_mel_bins, fft_length // 2 + 1, sample_rate, lower_edge_hz, upper_edge_hz)
        self.register_buffer("mel_matrix", mel, persistent=False)

    def magnitude(self, wave: Tensor) -> Tensor:
        """``|STFT|``: ``B×N`` → ``B×time×(fft_length//2 + 1)``."""
        frames = frame_signal(wave, self.frame_length, self.frame_step, pad_end=True)
        return torch.fft.rfft(frames * self.window.to(wave.dtype), n=self.fft_length).abs()

    def forward(self, wave: Tensor) -> Tensor:
        _check_waveform(wave)
        mel = self.magnitude(wave) @ self.mel_matrix.to(wave.dtype)
        return torch.log1p(self.log_scale * mel).unsqueeze(1)


# --------------------------------------------------------------------------------------
# GDT: python_speech_features.logfbank, z-normalised


def hz_to_mel_psf(hz: Tensor) -> Tensor:
    """Mel scale of python_speech_features: ``2595 · log10(1 + hz / 700)``."""
    return 2595.0 * torch.log10(1.0 + hz / 700.0)


def mel_to_hz_psf(mel: Tensor) -> Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def triangular_filterbank(num_filters: int, nfft: int, sample_rate: int, low_hz: float, high_hz: float) -> Tensor:
    """python_speech_features ``get_filterbanks``: ``num_filters × (nfft//2 + 1)``.

    Edges are FFT bin indices ``floor((nfft + 1) · hz / sample_rate)`` of evenly spaced mel points.
    """
    mels = torch.linspace(float(hz_to_mel_psf(torch.tensor(low_hz, dtype=torch.float64))),
                          float(hz_to_mel_psf(torch.tensor(high_hz, dtype=torch.float64))),
                          num_filters + 2, dtype=torch.float64)
    edges = torch.floor((nfft + 1) * mel_to_hz_psf(mels) / sample_rate)
    bins = torch.arange(nfft // 2 + 1, dtype=torch.float64)[None]
    left, centre, right = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = torch.where((bins >= left) & (bins < centre), (bins - left) / (centre - left).clamp(min=1), 0.0)
    falling = torch.where((bins >= centre) & (bins < right), (right - bins) / (right - centre).clamp(min=1), 0.0)
    return (rising + falling).float()


class LogFilterbank(nn.Module):
    """GDT's audio input: waveform ``B×N`` → z-normalised log filterbank ``B×1×time×filters``.

    ``python_speech_features.logfbank(wav, 24000, winlen=0.02, winstep=0.01, nfilt=40,
    nfft=1024)`` with its defaults (pre-emphasis 0.97, rectangular window, 0 to
    sample_rate/2), then ``(x - 1.93) / 17.89``. GDT feeds int16-scaled samples, so the
    float waveform is first multiplied by ``input_scale`` (32768) for the constants to fit.
    1 s at 24 kHz gives 99 frames. (GDT lays it out filters×time; we keep the shared
    time×freq layout.)
    """

    def __init__(
        self,
        sample_rate: int = 24000,
        win_length: float = 0.02,
        win_step: float = 0.01,
        num_filters: int = 40,
        nfft: int = 1024,
        preemphasis: float = 0.97,
        low_hz: float = 0.0,
        high_hz: float | None = None,
        input_scale: float = 32768.0,
        mean: float = 1.93,
        std: float = 17.89,
    ):
        super().__init__()
        self.frame_length = int(math.floor(win_length * sample_rate + 0.5))  # round half up
        self.frame_step = int(math.floor(win_step * sample_rate + 0.5))
        if self.frame_length > nfft:
            raise ValueError(f"a {self.frame_length}-sample window does not fit a {nfft}-point FFT")
        self.nfft, self.preemphasis, self.input_scale, self.mean, self.std = nfft, preemphasis, input_scale, mean, std
        high_hz = sample_rate / 2 if high_hz is None else high_hz
        self.register_buffer("filters", triangular_filterbank(num_filters, nfft, sample_rate, low_hz, high_hz),
                             persistent=False)

    def num_frames(self, num_samples: int) -> int:
        """python_speech_features ``framesig``: 1 frame, plus one per started step after the first window."""
        if num_samples <= self.frame_length:
            return 1
        return 1 + math.ceil((num_samples - self.frame_length) / self.frame_step)

    def forward(self, wave: Tensor) -> Tensor:
        _check_waveform(wave)
        signal = wave * self.input_scale
        signal = torch.cat([signal[:, :1], signal[:, 1:] - self.preemphasis * signal[:, :-1]], dim=1)
        frames_count = self.num_frames(signal.shape[1])
        needed = (frames_count - 1) * self.frame_step + self.frame_length
        signal = F.pad(signal, (0, needed - signal.shape[1]))
        frames = signal.unfold(-1, self.frame_length, self.frame_step)
        power = torch.fft.rfft(frames, n=self.nfft).abs() ** 2 / self.nfft
        energies = power @ self.filters.t().to(power.dtype)
        # python_speech_features replaces exact zeros by float64 eps before the log
        energies = torch.where(energies == 0, torch.full_like(energies, torch.finfo(torch.float64).eps), energies)
        return ((torch.log(energies) - self.mean) / self.std).unsqueeze(1)


# --------------------------------------------------------------------------------------
# augmentation


# GDT's settings (m_F, m_T, F, T): masks per axis and their maximum widths
SPEC_AUGMENT_SETTINGS: dict[str, tuple[int, int, int, int]] = {
    "mild": (1, 1, 2, 5),
    "medium": (1, 1, 3, 6),
    "heavy": (2, 2, 3, 6),
}


def _band_mask(batch: int, masks: int, max_width: int, length: int, device, generator) -> Tensor:
    """``B×length`` bool, True inside ``masks`` random bands per sample of width ``int(U(0, max_width))``."""
    mask = torch.zeros(batch, length, dtype=torch.bool, device=device)
    positions = torch.arange(length, device=device)[None]
    for _ in range(masks):
        width = torch.floor(uniform(batch, 0.0, float(max_width), device=device, generator=generator))
        width = width.clamp(max=length)
        start = torch.floor(uniform(batch, 0.0, 1.0, device=device, generator=generator) * (length - width + 1))
        mask |= (positions >= start[:, None]) & (positions < (start + width)[:, None])
    return mask


class SpecAugment(nn.Module):
    """Frequency and time masking (no time warp), independently per sample, as GDT uses it.

    Each of ``freq_masks`` bands has width ``int(U(0, max_freq_width))`` at a uniform start;
    same for ``time_masks`` along time. Masked values become ``value`` (GDT: 0).

    Example:
        >>> spec = torch.ones(2, 1, 99, 40)
        >>> out = SpecAugment(*SPEC_AUGMENT_SETTINGS["medium"])(spec, generator=torch.Generator().manual_seed(0))
        >>> out.shape
        torch.Size([2, 1, 99, 40])
    """

    def __init__(self, freq_masks: int = 1, time_masks: int = 1, max_freq_width: int = 3,
                 max_time_width: int = 6, value: float = 0.0):
        super().__init__()
        if min(freq_masks, time_masks, max_freq_width, max_time_width) < 0:
            raise ValueError("mask counts and widths must be >= 0")
        self.freq_masks, self.time_masks = freq_masks, time_masks
        self.max_freq_width, self.max_time_width, self.value = max_freq_width, max_time_width, value

    def masks(self, spec: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Bool masks ``B×time`` and ``B×freq`` (True = masked) for ``spec``."""
        batch, _, time, freq = spec.shape
        freq_mask = _band_mask(batch, self.freq_masks, self.max_freq_width, freq, spec.device, generator)
        time_mask = _band_mask(batch, self.time_masks, self.max_time_width, time, spec.device, generator)
        return time_mask, freq_mask

    def forward(self, spec: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_spectrogram(spec)
        time_mask, freq_mask = self.masks(spec, generator)
        masked = time_mask[:, None, :, None] | freq_mask[:, None, None, :]
        return spec.masked_fill(masked, self.value)


class VolumeJitter(nn.Module):
    """Multiply each waveform by a gain ~ U(``low``, ``high``) (GDT: 0.9–1.1)."""

    def __init__(self, low: float = 0.9, high: float = 1.1):
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(f"need 0 <= low <= high, got {low}, {high}")
        self.low, self.high = low, high

    def forward(self, wave: Tensor, generator: torch.Generator | None = None) -> Tensor:
        _check_waveform(wave)
        gain = uniform(wave.shape[0], self.low, self.high, device=wave.device, generator=generator)
        return wave * gain[:, None].to(wave.dtype)


__all__ = [
    "LogFilterbank", "LogMelSpectrogram", "SPEC_AUGMENT_SETTINGS", "SpecAugment", "VolumeJitter",
    "frame_signal", "linear_to_mel_weight_matrix", "triangular_filterbank",
]
