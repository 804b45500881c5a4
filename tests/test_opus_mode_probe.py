"""eval.opus_mode_probe: 48 kHz input makes libopus code speech in hybrid mode at 32 kbit/s, and the
probe pairs neural (with and without deferring) against libopus' concealment there."""

import numpy as np

from eval.opus_mode_probe import code_clip, main

from .conftest import syllabic, write_manifest


def test_48k_input_at_32_kbits_is_hybrid_and_at_96_kbits_celt():
    x = syllabic(seconds=1.0)
    lost = np.zeros(50, bool)
    lost[[10, 20, 21]] = True
    payloads, lost_packets, modes, delay = code_clip(x, lost, 32000)
    assert len(payloads) * 320 >= len(x) and lost_packets.sum() == 3 and len(modes) == len(payloads)
    assert [m for m, gone in zip(modes, lost_packets) if gone] == ["hybrid"] * 3 and 0 < delay < 320
    assert set(code_clip(x, lost, 96000)[2]) == {"celt"}


def test_the_decoder_is_steered_in_hybrid_mode_too(speech_16k):
    """The shipped runtime steers the decoder in hybrid mode (after WARM_PACKETS packets, at a loss
    after voiced audio: the decoder switches to SILK for that packet and back); steered in SILK
    only, it plays exactly ``opus`` there."""
    from eval.opus_mode_probe import receive
    from plc.concealers import make_concealer

    x = speech_16k
    _, _, modes, _ = code_clip(x, np.zeros(150, bool), 32000)   # lose only hybrid packets (the model conceals CELT)
    hybrid = [p for p in range(8, len(modes) - 1) if modes[p] == modes[p + 1] == "hybrid"]
    lost = np.zeros(150, bool)
    lost[hybrid[::9][:10]] = True
    payloads, lost_packets, modes, _ = code_clip(x, lost, 32000)
    assert lost_packets.sum() >= 3 and {m for m, gone in zip(modes, lost_packets) if gone} == {"hybrid"}
    ref = receive(payloads, lost_packets, make_concealer("opus"))
    silk_only = make_concealer("neural", realtime=False)
    assert np.array_equal(receive(payloads, lost_packets, silk_only, {"steerable_modes": ("silk",)}), ref)
    assert silk_only.stats.steered_losses == 0
    steered = make_concealer("neural", realtime=False)
    y = receive(payloads, lost_packets, steered)
    assert steered.stats.steered_losses > 0 and not np.array_equal(y, ref) and np.all(np.isfinite(y))


def test_probe_prints_modes_and_pairs_against_opus(tmp_path, capsys):
    manifest = write_manifest(tmp_path, [syllabic(seconds=1.5, seed=i) for i in range(2)])
    assert main(["--manifest", str(manifest), "--clips", "2", "--every", "1",
                 "--loss", "gilbert:0.3,3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "lost packets coded in" in lines[0] and len(lines) == 6      # a tone is often CELT, speech hybrid
    assert lines[1].startswith("opus:") and "dPLCMOS +0.000" in lines[1]
    assert lines[2].startswith("neural:") and lines[3].startswith("neural, model in every mode:")
    assert lines[4].startswith("neural, decoder in step in SILK only:")
    assert lines[5].startswith("neural, steered under FEC too:")


def test_aiortcs_stereo_sender_with_fec_is_hybrid_and_lost_packets_are_decoded_from_copies(speech_16k):
    """``--sender aiortc --fec``: the live call's stream (aiortc's 96 kbit/s stereo encoder with
    in-band FEC codes speech as hybrid), received as the jitter buffer does: a lost packet whose
    successor came is decoded from its copy (its low band: the high band is concealed), so it is
    far closer to the loss-free audio than libopus' concealment of it, and only the rest is
    concealed. In that stream ``neural`` leaves the decoder to libopus (its PLC and the copies)
    and plays exactly what ``opus`` plays; ``steer_with_fec`` steers it as without FEC."""
    from eval.opus_mode_probe import receive
    from plc.concealers import make_concealer

    x = speech_16k[:3 * 16000]
    lost = np.zeros(150, bool)
    lost[[30, 45, 46, 70, 71, 72, 100, 120]] = True
    payloads, lost_packets, modes, delay = code_clip(x, lost, 96000, sender="aiortc", fec=True)
    gone = [m for m, g in zip(modes, lost_packets) if g]
    assert gone.count("hybrid") >= 6 and 0 <= delay < 320
    clean = receive(payloads, np.zeros_like(lost_packets), make_concealer("opus"))
    with_fec = receive(payloads, lost_packets, make_concealer("opus"), fec=True)
    without = receive(payloads, lost_packets, make_concealer("opus"))

    def err(y, packets):
        return sum(float(np.sum((y[p * 320:(p + 1) * 320] - clean[p * 320:(p + 1) * 320]) ** 2)) for p in packets)

    recovered = [30, 46, 72, 100, 120]   # each one's successor arrived
    assert err(with_fec, recovered) < 0.5 * err(without, recovered)
    assert np.array_equal(with_fec[:30 * 320], without[:30 * 320])   # nothing differs before the first loss
    deferring = make_concealer("neural", realtime=False)
    assert np.array_equal(receive(payloads, lost_packets, deferring, fec=True), with_fec)
    assert deferring.stats.steered_losses == 0 and deferring.stats.losses_left_to_fec >= 1
    steered = make_concealer("neural", realtime=False)
    y = receive(payloads, lost_packets, steered, {"steer_with_fec": True}, fec=True)
    assert steered.stats.steered_losses >= 1 and steered.stats.losses_left_to_fec == 0 and np.all(np.isfinite(y))   # 45 and 70 start losses FEC cannot mend
    assert not np.array_equal(y, with_fec)
    # a receiver holding the packets ahead (--lookahead): the burst 70-72 ends into 72's copy; the
    # burst 45-46 (46 mended) and single losses are left as they were; `opus` does not change
    ahead = make_concealer("neural", realtime=False)
    y = receive(payloads, lost_packets, ahead, fec=True, lookahead=True)
    assert ahead.stats.gaps_ended_ahead == 1 and ahead.stats.steered_losses == 0
    changed = np.flatnonzero(y != with_fec)
    assert changed.min() >= 71 * 320 and changed.max() < 72 * 320
    assert np.array_equal(receive(payloads, lost_packets, make_concealer("opus"), fec=True, lookahead=True), with_fec)
