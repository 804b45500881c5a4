"""Where does a concealer lose PLCMOS? Paired scores with one kind of loss put right.

Each loss (a run of lost 20 ms packets) is classed by what the listener heard just before it
and what was really lost:

* ``voiced``: the played audio before the loss has a pitch (normalised correlation at least
  ``neural``'s voicing threshold, the test the neural concealer itself makes at a loss);
* ``unvoiced onset``: not voiced before, but the lost audio holds more than four times (6 dB)
  the energy of the last 20 ms played: a syllable starting inside the loss, which no causal
  concealer can know about;
* ``unvoiced steady``: the rest (pauses, breath, fricatives, background noise).

For every class the clip is scored twice more: with that class's losses *replaced by the
original audio* (``oracle``: the most that class can still give) and concealed by the
``--against`` method instead (how the two concealers compare on that class alone). The
replaced stretch runs from the loss to ``DEFAULT_MERGE_SAMPLES`` after it (the merge back), and
is cross-faded into the concealed clip over that many samples more::

    python -m eval.loss_breakdown --manifest ../shared/data/train.csv --every 7 --clips 40 \\
        --loss bernoulli:0.1 --jobs 2

``--spectral-oracle`` adds four partial oracles per class, to say *what* of the concealment is
wrong: ``oracle magnitude`` keeps the concealment's STFT phase under the original's magnitude,
``oracle phase`` the concealment's magnitude under the original's phase (256-point STFT, 64
hop: harmonics resolved, so magnitude is envelope and pitch, phase the waveform's fine timing).
The magnitude splits further into its spectral envelope (cepstrum liftered to
``ENVELOPE_LIFTER`` coefficients: formants and tilt, ~500 Hz resolution) and the fine structure
under it (harmonics, noise): ``oracle envelope`` puts the original's envelope under the
concealment's fine structure, ``oracle fine structure`` the original's fine structure under
the concealment's envelope (both with the concealment's phase).

Prints the losses of each class, mean PLCMOS and PESQ-WB of every variant and the paired
difference to ``--method`` as it is (normal 95% interval).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .sweep import PACKET_MS, add_clip_arguments, loss_trace, map_clips, sweep_paths

SAMPLE_RATE = 16000
CLASSES = ("voiced", "unvoiced steady", "unvoiced onset")
ONSET_ENERGY_RATIO = 4.0   # 6 dB more energy in the lost audio than in the last 20 ms played


@dataclass(frozen=True)
class LossEvent:
    start: int   # first lost sample
    end: int     # one past the last lost sample
    kind: str    # one of CLASSES


def loss_events(lost_packets: np.ndarray, played: np.ndarray, original: np.ndarray,
                sample_rate: int = SAMPLE_RATE, voiced_threshold: Optional[float] = None) -> list[LossEvent]:
    """The losses of a clip with their class (see the module docstring).

    ``played`` is the concealed clip (what was heard before each loss, earlier concealment
    included), ``original`` the clip without loss; both ``(samples,)`` at ``sample_rate``.
    """
    from plc.concealers.neural import DEFAULT_VOICED_THRESHOLD
    from plc.neural.features import FeatureConfig, pitch_lag

    threshold = DEFAULT_VOICED_THRESHOLD if voiced_threshold is None else voiced_threshold
    features, packet = FeatureConfig(sample_rate=sample_rate), sample_rate * PACKET_MS // 1000
    lost = np.asarray(lost_packets, dtype=bool)
    edges = np.flatnonzero(np.diff(np.r_[0, lost.astype(np.int8), 0]))
    events = []
    for first, last in zip(edges[::2], edges[1::2]):
        start, end = first * packet, min(len(original), last * packet)
        if start >= end:
            continue
        _, voicing = pitch_lag(played[:start], features)
        if voicing >= threshold:
            kind = "voiced"
        else:
            before = played[max(0, start - packet):start]
            energy_before = float(np.mean(before ** 2)) if len(before) else 0.0
            onset = float(np.mean(original[start:end] ** 2)) > ONSET_ENERGY_RATIO * energy_before + 1e-10
            kind = "unvoiced onset" if onset else "unvoiced steady"
        events.append(LossEvent(int(start), int(end), kind))
    return events


def replace_losses(concealed: np.ndarray, other: np.ndarray, events: list[LossEvent], kind: str,
                   merge_samples: int) -> np.ndarray:
    """``concealed`` with the losses of class ``kind`` (and ``merge_samples`` after each) taken from
    ``other``, cross-faded back into ``concealed`` over ``merge_samples`` more."""
    from plc.dsp import raised_cosine_fade

    out = concealed.copy()
    ramp = raised_cosine_fade(merge_samples)
    for ev in events:
        if ev.kind != kind:
            continue
        hold = min(len(out), ev.end + merge_samples)
        out[ev.start:hold] = other[ev.start:hold]
        n = min(merge_samples, len(out) - hold)
        out[hold:hold + n] = other[hold:hold + n] * (1.0 - ramp[:n]) + concealed[hold:hold + n] * ramp[:n]
    return out


#: STFT of the partial oracles (``--spectral-oracle``): 16 ms windows, 4 ms hop.
HYBRID_N_FFT, HYBRID_HOP = 256, 64
#: Cepstral coefficients kept for the spectral envelope: quefrencies under 1 ms, so the envelope
#: is smooth over ~500 Hz and holds no harmonics of voices under 1 kHz.
ENVELOPE_LIFTER = 16
SPECTRAL_HYBRIDS = ("oracle magnitude", "oracle phase", "oracle envelope", "oracle fine structure")


def spectral_envelope(stft: np.ndarray, lifter: int = ENVELOPE_LIFTER) -> np.ndarray:
    """The smooth spectral envelope of each column of a one-sided ``stft`` (bins, frames): the
    log magnitude's real cepstrum liftered to its first ``lifter`` quefrencies, back as a magnitude."""
    n_fft = 2 * (stft.shape[0] - 1)
    cepstrum = np.fft.irfft(np.log(np.abs(stft) + 1e-7), n=n_fft, axis=0)
    cepstrum[lifter:n_fft - lifter + 1] = 0.0
    return np.exp(np.fft.rfft(cepstrum, axis=0).real)


def spectral_hybrids(concealed: np.ndarray, original: np.ndarray) -> tuple[np.ndarray, ...]:
    """The partial oracles named in ``SPECTRAL_HYBRIDS``, each resynthesised over the whole clip
    (inverse STFT, Hann windows): original magnitude with the concealment's phase, concealment's
    magnitude with the original's phase, original envelope over the concealment's fine structure,
    original fine structure under the concealment's envelope."""
    import librosa

    kw = dict(n_fft=HYBRID_N_FFT, hop_length=HYBRID_HOP)
    c, o = librosa.stft(concealed, **kw), librosa.stft(original, **kw)
    c_phase = np.exp(1j * np.angle(c))
    c_env, o_env = spectral_envelope(c), spectral_envelope(o)
    spectra = (np.abs(o) * c_phase, np.abs(c) * np.exp(1j * np.angle(o)),
               np.abs(c) * (o_env / c_env) * c_phase, np.abs(o) * (c_env / o_env) * c_phase)
    n = len(original)
    return tuple(librosa.istft(s, length=n, **kw).astype(np.float32) for s in spectra)


def variant_names(method: str, against: str, spectral_oracle: bool = False) -> list[str]:
    hows = ("oracle", against) + (SPECTRAL_HYBRIDS if spectral_oracle else ())
    return [method] + [f"{kind}: {how}" for kind in CLASSES for how in hows]


def _score_clip(args: tuple[str, int, str, str, str, bool]) -> tuple[list[tuple[float, float]], list[int]]:
    path, index, loss_spec, method, against, spectral_oracle = args
    from plc.concealers.neural import DEFAULT_MERGE_SAMPLES
    from plc.offline import conceal_audio

    from .metrics import pesq_wb, plcmos
    from .runner import load_clip_16k

    x = load_clip_16k(path)
    lost = loss_trace(len(x), SAMPLE_RATE, loss_spec, index)
    y = conceal_audio(x, SAMPLE_RATE, lost, method).audio
    other = conceal_audio(x, SAMPLE_RATE, lost, against).audio
    events = loss_events(lost, y, x)
    sources = [x, other] + (list(spectral_hybrids(y, x)) if spectral_oracle else [])
    outputs = [y]
    for kind in CLASSES:
        outputs += [replace_losses(y, source, events, kind, DEFAULT_MERGE_SAMPLES) for source in sources]
    scores = [(plcmos(z, SAMPLE_RATE, seed=index), pesq_wb(x, z, SAMPLE_RATE)) for z in outputs]
    return scores, [sum(ev.kind == kind for ev in events) for kind in CLASSES]


def main(argv: Optional[list[str]] = None) -> int:
    from plc.concealers import available_methods

    p = argparse.ArgumentParser(prog="python -m eval.loss_breakdown", description=__doc__.split("\n\n")[0])
    add_clip_arguments(p, clips=40)
    p.add_argument("--method", default="neural", help="the concealer to break down (default neural)")
    p.add_argument("--against", default="neteq", help="the concealer each class is also tried with (default neteq)")
    p.add_argument("--spectral-oracle", action="store_true",
                   help="also put right only the STFT magnitude, the phase, the spectral envelope or the "
                        "fine structure of each class")
    args = p.parse_args(argv)
    pcm_methods = available_methods(codec="pcm")
    for name in (args.method, args.against):
        if name not in pcm_methods:
            p.error(f"unknown PCM method {name!r} (choose from {', '.join(pcm_methods)})")
    from .summary import paired_line, paired_scores

    paths = sweep_paths(p, args)
    if not paths:
        p.error(f"{args.manifest}: no clips selected")
    jobs = [(path, i, args.loss, args.method, args.against, args.spectral_oracle) for i, path in enumerate(paths)]
    results = map_clips(_score_clip, jobs, args.jobs)
    rows = np.array([r[0] for r in results])              # (clips, variants, 2)
    counts = np.sum([r[1] for r in results], axis=0)
    print("losses: " + ", ".join(f"{kind} {n}" for kind, n in zip(CLASSES, counts))
          + f"  ({len(rows)} clips, {args.loss})")
    names = variant_names(args.method, args.against, args.spectral_oracle)
    width = max(len(name) for name in names)
    for name, r in zip(names, paired_scores(rows, 0)):
        print(paired_line(f"{name:{width}s}", r, args.method))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
