"""eval.steering_probe: who makes which packets of a SILK-mode loss with the decoder in step."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from eval.steering_probe import Variant, main, receive

from .conftest import syllabic, write_manifest


def test_variant_specs_parse_and_bad_ones_are_refused():
    assert Variant.parse("opus") == Variant("opus")
    v = Variant.parse("model:k=1:voiced:rate=16000:att=0.85:raw:dir=runs/x/export")
    assert v.kind == "model" and v.options == {"k": 1, "voiced": True, "rate": 16000, "att": 0.85, "raw": True,
                                               "dir": "runs/x/export"}
    assert Variant.parse("model:k=1:voiced:mix=0.25").options == {"k": 1, "voiced": True, "mix": 0.25}
    assert Variant.parse("model:ramp=0.5:pick=burst").options == {"ramp": 0.5, "pick": "burst"}
    assert Variant.parse("opus:interp=160:min_burst=2").options == {"interp": 160, "min_burst": 2}
    assert Variant.parse("opus:interp=320:corr=0.5").options == {"interp": 320, "corr": 0.5}
    for bad in ("opus:interp=0", "opus:min_burst=2", "opus:corr=0.5", "opus:interp=160:min_burst=0", "neural", "model:k=0", "model:k=x", "model:voiced=1", "model:raw=yes", "model:att=1.5",
                "model:warm=0", "model:mix=1.5", "model:ramp=2", "model:pick=best", "model:pick", "model:mix=-0.1", "model:gain=0", "oracle:colour=red", "model:k", "model:dir", "model:dir="):
        with pytest.raises(argparse.ArgumentTypeError):
            Variant.parse(bad)


def _trace(n: int) -> np.ndarray:
    lost = np.zeros(n, bool)
    lost[[12, 25, 26, 40, 41, 42, 60, 80, 81, 100]] = True
    return lost


def test_opus_is_the_products_opus_path_and_the_oracle_is_far_closer_to_the_truth(speech_16k):
    """The reference variant is ``plc conceal --codec opus --method opus`` bit for bit; the true audio
    coded into the decoder is much closer to the loss-free decode than libopus' PLC is."""
    from plc.offline import conceal_audio

    x = speech_16k
    lost = _trace(150)
    opus = receive(x, lost, Variant("opus"))
    assert np.array_equal(opus, conceal_audio(x, 16000, lost, "opus", codec="opus", bitrate_bps=24000).audio)
    clean = receive(x, np.zeros(150, bool), Variant("opus"))
    oracle = receive(x, lost, Variant("oracle"))

    def err(y):
        return float(np.sum((y - clean) ** 2))

    assert err(oracle) < 0.3 * err(opus)
    model = receive(x, lost, Variant.parse("model:k=1:voiced"))
    assert model.shape == x.shape and np.all(np.isfinite(model)) and not np.array_equal(model, opus)


def test_probe_prints_one_paired_line_per_variant(tmp_path, capsys):
    manifest = write_manifest(tmp_path, [syllabic(seconds=1.2, seed=i) for i in range(2)])
    assert main(["--manifest", str(manifest), "--clips", "2", "--every", "1", "--loss", "gilbert:0.3,3",
                 "--variant", "opus", "--variant", "model:k=1:voiced", "--variant", "replc"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("opus:") and "dPLCMOS +0.000" in lines[0]
    assert lines[1].startswith("model:k=1:voiced:") and lines[2].startswith("replc:")


def test_a_model_folder_that_does_not_load_is_a_usage_error(tmp_path, capsys):
    manifest = write_manifest(tmp_path, [syllabic(seconds=2.0)])
    with pytest.raises(SystemExit) as exc:
        main(["--manifest", str(manifest), "--clips", "1", "--variant", "opus",
              "--variant", f"model:k=1:dir={tmp_path / 'nothing'}"])
    assert exc.value.code == 2 and "model.json" in capsys.readouterr().err


def test_the_burst_oracle_plays_libopus_plc_or_the_model_whichever_is_closer_to_the_truth(speech_16k):
    """``pick=burst`` runs both branches of each loss on copies of the decoder and keeps the one
    closer to the loss-free decode: it ends up no farther from it than the worse of the two."""
    from eval.steering_probe import _log_spectral_distance

    x = speech_16k
    lost = _trace(150)
    clean = receive(x, np.zeros(150, bool), Variant("opus"))
    runs = {spec: receive(x, lost, Variant.parse(spec)) for spec in ("opus", "model:k=1", "model:k=1:pick=burst")}
    dist = {spec: _log_spectral_distance(y, clean) for spec, y in runs.items()}
    assert all(np.all(np.isfinite(y)) and y.shape == x.shape for y in runs.values())
    assert dist["model:k=1:pick=burst"] <= max(dist["opus"], dist["model:k=1"]) + 1e-6


def test_interpolation_changes_only_the_end_of_each_gap(speech_16k):
    """``interp=N`` touches the last N samples before each resumed packet and nothing else; the
    decoder state, and so every packet after the gap, is left as it was."""
    x = speech_16k
    lost = _trace(150)
    plain = receive(x, lost, Variant("opus"))
    ended = receive(x, lost, Variant.parse("opus:interp=160"))
    from plc.codecs.opus import OpusEncoder

    shift = OpusEncoder(16000, bitrate_bps=24000, frame_ms=20).lookahead
    touched = np.zeros(len(plain) + shift, bool)
    for p in np.flatnonzero(lost & ~np.roll(lost, -1)):   # the last packet of each burst
        touched[(p + 1) * 320 - 160:(p + 1) * 320] = True
    touched = touched[shift:shift + len(plain)]
    assert np.array_equal(plain[~touched], ended[~touched])
    assert not np.array_equal(plain[touched], ended[touched])
