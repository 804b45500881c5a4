"""Multi-resolution spectrogram discriminator for adversarial fine-tuning (training only).

A point-estimate generator trained with spectral and waveform losses alone
regresses to the mean: when it cannot know what comes next it makes the average
of the possibilities, which over a long loss sounds muffled ("averaged") and is
what PLCMOS marks down. An adversarial loss, as in FARGAN (Opus 1.5's PLC) and
HiFi-GAN/UniVNet vocoders, rewards output that is indistinguishable from real
speech instead, and gives the noise input something to do.

Each sub-discriminator looks at the log-magnitude STFT of a segment (the last
real audio before the loss followed by the concealment, so the seam is in
view) at one resolution, through a small stack of dilated convolutions; the generator
is trained to fool all of them (least-squares GAN) and to match their internal
features on the real audio (feature matching), which stabilises training.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

DISCRIMINATOR_FFT_SIZES = (64, 128, 256, 512)
#: Periods of the waveform sub-discriminators (HiFi-GAN's multi-period discriminator), when used.
DISCRIMINATOR_PERIODS = (2, 3, 5, 7, 11)


class SpectrogramDiscriminator(nn.Module):
    """One resolution: log |STFT| (bins as channels) -> 1-D dilated convolutions over frames.

    Frequency-as-channels convolutions (rather than 2-D ones over the spectrogram image) keep
    the discriminator cheap enough to train beside the generator on a 2-core CPU (~0.25 s a batch
    of 64 for all four resolutions, against 0.9-2.8 s for 2-D stacks of 16-32 channels).
    """

    def __init__(self, n_fft: int, channels: int = 64) -> None:
        super().__init__()
        self.n_fft = n_fft
        c, bins = channels, n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([
            weight_norm(nn.Conv1d(bins, c, 3, padding=1)),
            weight_norm(nn.Conv1d(c, c, 3, padding=2, dilation=2)),
            weight_norm(nn.Conv1d(c, c, 3, padding=4, dilation=4)),
            weight_norm(nn.Conv1d(c, c, 3, padding=1)),
        ])
        self.out = weight_norm(nn.Conv1d(c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.n_fft // 4, window=self.window,
                          return_complex=True).abs()
        h = torch.log(spec + 1e-2)                                  # (B, bins, frames)
        features = []
        for conv in self.convs:
            h = nn.functional.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.out(h), features


class PeriodDiscriminator(nn.Module):
    """One period ``p`` of HiFi-GAN's multi-period discriminator, on the waveform itself.

    The segment is folded into ``(samples / p, p)`` and 2-D convolutions with ``(k, 1)`` kernels
    run down each column: they compare samples one period apart, so they judge the fine periodic
    structure of voiced speech (the harmonics' phases, jitter, buzz) that log-magnitude
    spectrograms smooth over. Small channel counts keep it trainable on a CPU.
    """

    def __init__(self, period: int, channels: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        self.period = period
        convs, c_in = [], 1
        for i, c in enumerate(channels):
            stride = 3 if i < len(channels) - 1 else 1
            convs.append(weight_norm(nn.Conv2d(c_in, c, (5, 1), (stride, 1), padding=(2, 0))))
            c_in = c
        self.convs = nn.ModuleList(convs)
        self.out = weight_norm(nn.Conv2d(c_in, 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, n = x.shape
        pad = (-n) % self.period
        if pad:
            x = nn.functional.pad(x, (0, pad), mode="reflect")
        h = x.view(b, 1, -1, self.period)                          # (B, 1, samples / p, p)
        features = []
        for conv in self.convs:
            h = nn.functional.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.out(h), features


class MultiResolutionDiscriminator(nn.Module):
    """The sub-discriminators of :data:`DISCRIMINATOR_FFT_SIZES`, then one waveform
    :class:`PeriodDiscriminator` per period in ``periods`` (none by default, as v3 was trained).

    The spectrogram sub-discriminators come first, so weights of a spectrogram-only
    discriminator load into one with periods (:meth:`load_spectral_state`)."""

    def __init__(self, fft_sizes: tuple[int, ...] = DISCRIMINATOR_FFT_SIZES, channels: int = 64,
                 periods: tuple[int, ...] = ()) -> None:
        super().__init__()
        self.discriminators = nn.ModuleList([SpectrogramDiscriminator(n, channels) for n in fft_sizes]
                                            + [PeriodDiscriminator(p) for p in periods])

    def load_spectral_state(self, state: dict) -> list[str]:
        """Load ``state`` (a discriminator's state dict), allowing only the period
        sub-discriminators to be missing from it; returns the keys left at their initial values."""
        missing, unexpected = self.load_state_dict(state, strict=False)
        n_spectral = sum(isinstance(d, SpectrogramDiscriminator) for d in self.discriminators)
        spectral_missing = [k for k in missing if int(k.split(".")[1]) < n_spectral]
        if unexpected or spectral_missing:
            raise RuntimeError(f"discriminator weights do not fit: missing {spectral_missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        return list(missing)

    def forward(self, x: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        """Segments (B, samples) -> per resolution (score map, feature maps)."""
        return [d(x) for d in self.discriminators]


def discriminator_loss(disc: MultiResolutionDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Least-squares GAN loss of the discriminator: real -> 1, fake (detached) -> 0.

    One forward pass over both halves (as DistributedDataParallel wants: one forward per backward).
    """
    n = real.shape[0]
    total = real.new_zeros(())
    outputs = disc(torch.cat([real, fake.detach()], dim=0))
    for score, _ in outputs:
        total = total + ((score[:n] - 1.0) ** 2).mean() + (score[n:] ** 2).mean()
    return total / len(outputs)


def generator_adversarial_loss(disc: MultiResolutionDiscriminator, real: torch.Tensor,
                               fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(least-squares adversarial loss, feature-matching L1) of the generator's output ``fake``.

    Pass the plain (not DistributedDataParallel) discriminator: its parameters get no gradient here.
    """
    adv, fm = fake.new_zeros(()), fake.new_zeros(())
    disc.requires_grad_(False)
    with torch.no_grad():
        real_out = disc(real)
    fake_out = disc(fake)
    disc.requires_grad_(True)
    n_features = 0
    for (score_fake, feats_fake), (_, feats_real) in zip(fake_out, real_out):
        adv = adv + ((score_fake - 1.0) ** 2).mean()
        for ff, fr in zip(feats_fake, feats_real):
            fm = fm + (ff - fr).abs().mean() / (fr.abs().mean() + 1e-3)
            n_features += 1
    return adv / len(fake_out), fm / max(1, n_features)
