"""Audio front ends (BraVe log-mel, GDT log filterbank), SpecAugment and volume jitter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vidssl.data.audio import (
    SPEC_AUGMENT_SETTINGS,
    LogFilterbank,
    LogMelSpectrogram,
    SpecAugment,
    VolumeJitter,
    frame_signal,
    linear_to_mel_weight_matrix,
    triangular_filterbank,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def tone(hz: float, seconds: float, rate: int, batch: int = 1) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * math.pi * hz * t)).float().expand(batch, -1).contiguous()


def htk_mel(hz: float) -> float:
    return 1127.0 * math.log1p(hz / 700.0)


def test_brave_spectrogram_shape_for_the_broad_view():
    wave = torch.zeros(1, int((64 * 4 / 25) * 48000))  # 10.24 s at 48 kHz, BraVe's broad audio
    spec = LogMelSpectrogram(sample_rate=48000)(wave)
    assert spec.shape == (1, 1, 3072, 80) and spec.dtype == torch.float32
    assert spec.abs().max() == 0  # log(1 + 1e4 · 0)


@pytest.mark.parametrize("samples, frames", [(1, 1), (160, 1), (161, 2), (320, 2), (48000, 300)])
def test_frame_count_is_ceil_of_length_over_step(samples, frames):
    assert LogMelSpectrogram()(torch.zeros(2, samples)).shape == (2, 1, frames, 80)


def test_empty_mel_bands_at_48khz_but_not_16khz():
    at_48k = linear_to_mel_weight_matrix(80, 161, 48000, 80.0, 7600.0)
    at_16k = linear_to_mel_weight_matrix(80, 161, 16000, 80.0, 7600.0)
    empty_48k = (at_48k.sum(0) == 0).nonzero().flatten()
    assert len(empty_48k) == 16
    assert (at_16k.sum(0) == 0).sum() == 0
    assert empty_48k.max() < 40  # the empty bands are the narrow low ones
    # and they stay exactly zero whatever the input
    noise = torch.randn(2, 48000, generator=gen(0)) * 0.3
    spec = LogMelSpectrogram(sample_rate=48000)(noise)
    assert spec[..., empty_48k].abs().max() == 0
    assert (spec[..., [i for i in range(80) if i not in set(empty_48k.tolist())]].mean(dim=2) > 0).all()


def test_mel_matrix_triangles():
    weights = linear_to_mel_weight_matrix(80, 161, 16000, 80.0, 7600.0)
    assert weights.shape == (161, 80)
    assert weights[0].abs().sum() == 0  # DC bin zeroed
    assert weights.min() >= 0 and weights.max() <= 1
    # between the first and the last band centre, each FFT bin's weights sum to 1
    mel_edges = np.linspace(htk_mel(80.0), htk_mel(7600.0), 82)
    mel_of_bins = torch.tensor([htk_mel(f) for f in np.linspace(0, 8000, 161)])
    inside = (mel_of_bins >= mel_edges[1]) & (mel_of_bins <= mel_edges[-2])
    torch.testing.assert_close(weights[inside].sum(1), torch.ones(int(inside.sum())), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="upper_edge_hz"):
        linear_to_mel_weight_matrix(80, 161, 16000, 80.0, 9000.0)


@pytest.mark.parametrize("rate, hz", [(16000, 1000.0), (16000, 3000.0), (48000, 2500.0)])
def test_pure_tone_peaks_in_its_mel_band(rate, hz):
    spec = LogMelSpectrogram(sample_rate=rate)(tone(hz, 0.5, rate))
    peak = int(spec[0, 0].mean(0).argmax())
    edges = np.linspace(htk_mel(80.0), htk_mel(7600.0), 82)
    centres = edges[1:-1]
    expected = int(np.argmin(np.abs(centres - htk_mel(hz))))
    assert abs(peak - expected) <= 1


def test_spectrogram_is_log1p_of_scaled_mel_magnitude():
    module = LogMelSpectrogram(sample_rate=16000)
    wave = torch.randn(1, 1600, generator=gen(0)) * 0.1
    frames = frame_signal(wave, 320, 160, pad_end=True)
    magnitude = torch.fft.rfft(frames * torch.hann_window(320, periodic=True), n=320).abs()
    expected = torch.log1p(1e4 * magnitude @ module.mel_matrix)
    torch.testing.assert_close(module(wave)[:, 0], expected)
    # louder input, larger values (magnitude, not power: ×2 amplitude doubles the mel energy)
    mel = module.magnitude(wave) @ module.mel_matrix
    torch.testing.assert_close(module.magnitude(2 * wave) @ module.mel_matrix, 2 * mel, rtol=1e-4, atol=1e-6)


def reference_logfbank(signal: np.ndarray, rate=24000, winlen=0.02, winstep=0.01, nfilt=40, nfft=1024, preemph=0.97):
    """python_speech_features.logfbank written out with loops, to check the vectorised version."""
    signal = np.append(signal[0], signal[1:] - preemph * signal[:-1])
    frame_len, frame_step = int(round(winlen * rate)), int(round(winstep * rate))
    count = 1 if len(signal) <= frame_len else 1 + int(math.ceil((len(signal) - frame_len) / frame_step))
    padded = np.concatenate([signal, np.zeros((count - 1) * frame_step + frame_len - len(signal))])
    frames = np.stack([padded[i * frame_step : i * frame_step + frame_len] for i in range(count)])
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2 / nfft
    mel = lambda hz: 2595 * np.log10(1 + hz / 700.0)  # noqa: E731
    inverse = lambda m: 700 * (10 ** (m / 2595.0) - 1)  # noqa: E731
    bins = np.floor((nfft + 1) * inverse(np.linspace(mel(0), mel(rate / 2), nfilt + 2)) / rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        for i in range(int(bins[j]), int(bins[j + 1])):
            bank[j, i] = (i - bins[j]) / (bins[j + 1] - bins[j])
        for i in range(int(bins[j + 1]), int(bins[j + 2])):
            bank[j, i] = (bins[j + 2] - i) / (bins[j + 2] - bins[j + 1])
    feat = power @ bank.T
    return np.log(np.where(feat == 0, np.finfo(float).eps, feat))


def test_gdt_log_filterbank_matches_reference():
    wave = torch.randn(2, 24000, generator=gen(0), dtype=torch.float64).float() * 0.1
    out = LogFilterbank()(wave)
    assert out.shape == (2, 1, 99, 40)  # 1 s at 24 kHz: 99 frames, as GDT
    expected = (reference_logfbank(wave[1].double().numpy() * 32768.0) - 1.93) / 17.89
    np.testing.assert_allclose(out[1, 0].numpy(), expected, rtol=0, atol=2e-3)
    filters = triangular_filterbank(40, 1024, 24000, 0.0, 12000.0)
    assert filters.shape == (40, 513) and filters.max() <= 1


def test_gdt_log_filterbank_tone_and_silence():
    module = LogFilterbank()
    spec = module(tone(2000.0, 0.5, 24000))
    assert spec.shape == (1, 1, 49, 40)
    peak = int(spec[0, 0, 5:-5].mean(0).argmax())
    filters = triangular_filterbank(40, 1024, 24000, 0.0, 12000.0)
    assert peak == int(filters[:, round(2000 * 1024 / 24000)].argmax())
    silent = module(torch.zeros(1, 2400))
    expected = (math.log(np.finfo(float).eps) - 1.93) / 17.89
    torch.testing.assert_close(silent, torch.full_like(silent, expected))


def test_spectrogram_input_errors():
    with pytest.raises(ValueError, match="B×N"):
        LogMelSpectrogram()(torch.zeros(16000))
    with pytest.raises(ValueError, match="B×N"):
        LogFilterbank()(torch.zeros(1, 1, 16000))
    with pytest.raises(ValueError, match="fft_length"):
        LogMelSpectrogram(fft_length=256)
    with pytest.raises(ValueError, match="B×1×time×freq"):
        SpecAugment()(torch.zeros(2, 99, 40))


def test_spec_augment_masks():
    augment = SpecAugment(*SPEC_AUGMENT_SETTINGS["heavy"])  # 2 + 2 masks, widths < 3 and < 6
    spec = torch.rand(64, 1, 99, 40, generator=gen(0)) + 1.0  # never 0 before masking
    time_mask, freq_mask = augment.masks(spec, gen(1))
    out = augment(spec, generator=gen(1))
    masked = out == 0
    expected = time_mask[:, None, :, None] | freq_mask[:, None, None, :]
    assert torch.equal(masked, expected)
    torch.testing.assert_close(out[~masked], spec[~masked], rtol=0, atol=0)
    assert freq_mask.sum(1).max() <= 2 * 2 and time_mask.sum(1).max() <= 2 * 5
    assert freq_mask.any() and time_mask.any()
    assert len({tuple(m.nonzero().flatten().tolist()) for m in time_mask}) > 10  # per sample
    torch.testing.assert_close(augment(spec, generator=gen(1)), out, rtol=0, atol=0)
    untouched = SpecAugment(0, 0)(spec, generator=gen(0))
    torch.testing.assert_close(untouched, spec, rtol=0, atol=0)


def test_spec_augment_mask_widths_follow_gdt():
    """Width int(U(0, W)) at a uniform start: widths 0..W-1, each band contiguous and inside."""
    augment = SpecAugment(freq_masks=1, time_masks=0, max_freq_width=3)
    _, freq_mask = augment.masks(torch.zeros(2000, 1, 10, 40), gen(3))
    widths = freq_mask.sum(1)
    assert set(widths.tolist()) == {0, 1, 2}
    starts = freq_mask.float().argmax(1)
    for row, start, width in zip(freq_mask[:50], starts[:50], widths[:50]):
        assert row[start : start + width].all() and row.sum() == width
    with pytest.raises(ValueError, match=">= 0"):
        SpecAugment(max_time_width=-1)


def test_volume_jitter():
    wave = torch.randn(32, 100, generator=gen(0))
    out = VolumeJitter(0.9, 1.1)(wave, generator=gen(1))
    gain = out[:, 0] / wave[:, 0]
    torch.testing.assert_close(out, wave * gain[:, None])
    assert gain.min() >= 0.9 and gain.max() <= 1.1 and gain.std() > 0.01
    with pytest.raises(ValueError, match="low <= high"):
        VolumeJitter(1.2, 1.0)
