"""Paired statistics of the quick sweeps (eval.fade_sweep, eval.opus_plc_probe)."""

import numpy as np

from eval.summary import bootstrap_mean, paired_line, paired_scores


def test_paired_scores_pair_each_variant_with_the_reference_on_the_same_clips():
    rng = np.random.default_rng(0)
    base = rng.uniform(2.0, 4.0, size=(50, 1, 2))
    scores = np.concatenate([base, base + [0.1, -0.05], base + rng.normal(0, 0.2, size=(50, 1, 2))], axis=1)
    ref, shifted, noisy = paired_scores(scores, 0)
    assert ref["d_plcmos"] == 0.0 and ref["d_plcmos_half95"] == 0.0
    assert np.isclose(shifted["d_plcmos"], 0.1) and np.isclose(shifted["d_pesq"], -0.05)
    assert shifted["d_plcmos_half95"] < 1e-9        # a constant shift: the pairing removes clip spread
    assert 0.02 < noisy["d_plcmos_half95"] < 0.1     # ~1.96 * 0.2 / sqrt(50)
    assert np.isclose(shifted["plcmos"], base[:, 0, 0].mean() + 0.1)
    assert np.isnan(paired_scores(scores[:1], 0)[1]["d_plcmos_half95"])  # one clip: no interval


def test_bootstrap_mean_interval_covers_the_mean():
    x = np.random.default_rng(1).normal(3.0, 0.5, 200)
    r = bootstrap_mean(x, np.random.default_rng(0))
    assert r["ci95"][0] < r["mean"] < r["ci95"][1] and r["n"] == 200


def test_paired_line_prints_a_row_against_its_reference_with_an_optional_note():
    r = {"plcmos": 3.5, "pesq": 2.25, "d_plcmos": 0.125, "d_plcmos_half95": 0.0625, "d_pesq": -0.01}
    assert paired_line("neural", r, "neteq") == ("neural PLCMOS 3.500  PESQ 2.250  | vs neteq: dPLCMOS +0.125 "
                                                 "+-0.062  dPESQ -0.010")
    assert paired_line("x", r, "first", "3 clips").endswith("dPESQ -0.010  (3 clips)")


def test_runner_summary_and_report_read_one_metric_registry(monkeypatch):
    """A metric is one SignalMetric entry: results.csv's columns, the summary, the report's tables and
    compute_all all follow the registry (here with a cheap made-up metric added)."""
    import numpy as np

    from eval import metrics, report, summary

    extra = metrics.SignalMetric("rms", "RMS level", "RMS", 4, False, lambda ref, deg, seed: float(np.std(deg)))
    monkeypatch.setattr(metrics, "SIGNAL_METRICS", metrics.SIGNAL_METRICS + (extra,))
    monkeypatch.setattr(report, "SIGNAL_METRICS", metrics.SIGNAL_METRICS)
    assert {m.name for m in metrics.SIGNAL_METRICS[:3]} <= set(report.RESULT_COLUMNS)
    result = metrics.compute_all(np.zeros(16000), np.full(16000, 0.5), metrics=("rms",)).to_dict()
    assert result["rms"] == 0.0 and np.isnan(result["pesq"])
    rows = [dict(clip=str(i), corpus="", condition="c", method=m, codec="pcm", pesq=2.0, stoi=0.9, plcmos=3.0,
                 rms=0.1 * i, error="") for i in range(4) for m in ("neteq", "neural")]
    s = summary.summarize(rows)
    assert abs(s["conditions"]["c"]["neural"]["rms"]["mean"] - 0.15) < 1e-12
    assert "| RMS level |" in report.markdown_table(s, "c") and "0.1500" in report.markdown_table(s, "c")
