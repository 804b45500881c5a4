"""The loss breakdown classes losses by what came before and puts one class right at a time."""

import numpy as np
import pytest

from eval.loss_breakdown import (CLASSES, LossEvent, loss_events, main, replace_losses, spectral_hybrids,
                                 variant_names)

from .conftest import harmonic, write_manifest

SR = 16000
PACKET = SR // 50


def _vowel_pause_onset() -> np.ndarray:
    """0.5 s vowel, 0.3 s of faint noise, 0.4 s vowel."""
    rng = np.random.default_rng(0)
    pause = (0.001 * rng.standard_normal(int(0.3 * SR))).astype(np.float32)
    return np.concatenate([harmonic(140.0, 0.5, seed=1), pause, harmonic(180.0, 0.4, seed=2)])


def test_losses_are_classed_by_the_audio_before_them_and_what_was_lost():
    x = _vowel_pause_onset()
    lost = np.zeros(len(x) // PACKET, dtype=bool)
    lost[[10, 11]] = True   # 200-240 ms: inside the vowel
    lost[30] = True         # 600-620 ms: inside the pause
    lost[39] = True         # 780-800 ms: the pause ends at 800 ms ... still quiet
    lost[40] = True         # ... and the vowel starts in the same loss: 780-820 ms is one loss
    events = loss_events(lost, x, x)
    assert [(e.start // PACKET, e.end // PACKET, e.kind) for e in events] == [
        (10, 12, "voiced"), (30, 31, "unvoiced steady"), (39, 41, "unvoiced onset")]


def test_replacing_one_class_touches_only_its_losses_and_fades_back():
    concealed, other = np.zeros(4000, np.float32), np.ones(4000, np.float32)
    events = [LossEvent(1000, 1320, "voiced"), LossEvent(2000, 2320, "unvoiced steady")]
    out = replace_losses(concealed, other, events, "voiced", merge_samples=40)
    assert np.all(out[1000:1360] == 1.0) and np.all(out[:1000] == 0) and np.all(out[1400:] == 0)
    assert np.all(np.diff(out[1360:1400]) <= 0) and 0 < out[1380] < 1      # cross-fade back
    assert np.array_equal(replace_losses(concealed, other, events, "unvoiced onset", 40), concealed)


@pytest.mark.parametrize("spectral_oracle", [False, True], ids=["oracle", "spectral-oracle"])
def test_breakdown_prints_every_class_paired_with_the_method(tmp_path, capsys, spectral_oracle):
    manifest = write_manifest(tmp_path, [_vowel_pause_onset() for _ in range(2)], SR)
    assert main(["--manifest", str(manifest), "--clips", "2", "--every", "1", "--loss", "bernoulli:0.2",
                 "--method", "neteq", "--against", "zero"] + ["--spectral-oracle"] * spectral_oracle) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("losses: voiced ") and "(2 clips, bernoulli:0.2)" in lines[0]
    names = variant_names("neteq", "zero", spectral_oracle)
    assert [line.split(" PLCMOS")[0].strip() for line in lines[1:]] == names
    assert len(lines) == 2 + (6 if spectral_oracle else 2) * len(CLASSES) and "dPLCMOS +0.000" in lines[1]


def test_spectral_hybrids_take_magnitude_and_phase_from_either_signal():
    """Each half-oracle has the magnitude spectrum it says it has: the original's for
    ``oracle magnitude``, the concealment's for ``oracle phase``."""
    import librosa

    x = harmonic(150.0, 0.5, seed=4)
    rng = np.random.default_rng(5)
    y = (0.05 * rng.standard_normal(len(x))).astype(np.float32)   # a concealment that is all wrong
    magnitude, phase, _, _ = spectral_hybrids(y, x)
    assert magnitude.shape == phase.shape == x.shape and magnitude.dtype == np.float32

    def mag(z):
        return np.abs(librosa.stft(z, n_fft=256, hop_length=64))[:, 4:-4]   # away from the clip's edges

    def err(a, b):
        return np.linalg.norm(mag(a) - mag(b)) / np.linalg.norm(mag(b))

    assert err(magnitude, x) < 0.6 * err(y, x)   # the original's harmonics, not the noise floor
    assert err(phase, y) < 0.5 * err(x, y)


def test_unknown_methods_are_refused():
    for bad in (["--method", "opus"], ["--against", "nope"]):
        with pytest.raises(SystemExit):
            main(["--manifest", "x.csv", *bad])


def test_envelope_and_fine_structure_hybrids_swap_what_they_say():
    """``oracle envelope`` has the original's smooth envelope and the concealment's harmonics;
    ``oracle fine structure`` the concealment's envelope. (Its harmonics are not tested: under
    the concealment's phase at another pitch, resynthesis brings the concealment's comb back.)"""
    import librosa

    from eval.loss_breakdown import spectral_envelope

    bright = harmonic(200.0, 0.5, seed=6)                      # harmonics at 200 Hz spacing
    y = np.diff(np.r_[0.0, harmonic(125.0, 0.5, seed=7)]).astype(np.float32)   # other pitch, brighter tilt
    _, _, envelope, fine = spectral_hybrids(y, bright)

    def stft(z):
        return librosa.stft(z, n_fft=256, hop_length=64)[:, 4:-4]

    def log_err(a, b):
        return float(np.mean(np.abs(np.log(a) - np.log(b))))

    env = {name: spectral_envelope(stft(z)) for name, z in
           (("x", bright), ("y", y), ("envelope", envelope), ("fine", fine))}
    assert log_err(env["envelope"], env["x"]) < 0.5 * log_err(env["y"], env["x"])
    assert log_err(env["fine"], env["y"]) < 0.5 * log_err(env["x"], env["y"])

    def fine_structure(z):                                     # the 200 Hz vs 125 Hz harmonic comb
        s = stft(z)
        return np.abs(s) / spectral_envelope(s)

    def comb_corr(a, b):
        return float(np.corrcoef(np.log(fine_structure(a)).ravel(), np.log(fine_structure(b)).ravel())[0, 1])

    assert comb_corr(envelope, y) > comb_corr(envelope, bright) + 0.2
