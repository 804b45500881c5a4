import numpy as np
import pytest

from plc.loss_models import TraceError, burst_lengths, parse_loss_spec, read_trace, write_trace


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_bernoulli_rate_converges(rate):
    lost = parse_loss_spec(f"bernoulli:{rate}").generate(200_000, np.random.default_rng(1))
    assert abs(lost.mean() - rate) < 0.005
    assert abs(burst_lengths(lost).mean() - 1 / (1 - rate)) < 0.05


@pytest.mark.parametrize("rate,burst", [(0.1, 3), (0.2, 6), (0.05, 1.5)])
def test_gilbert_rate_and_mean_burst_converge(rate, burst):
    lost = parse_loss_spec(f"gilbert:{rate},{burst}").generate(400_000, np.random.default_rng(2))
    assert abs(lost.mean() - rate) < 0.01
    assert abs(burst_lengths(lost).mean() - burst) < 0.1 * burst


def test_gilbert_is_bursty_compared_to_bernoulli():
    rng = np.random.default_rng(3)
    g = parse_loss_spec("gilbert:0.1,4").generate(100_000, rng)
    b = parse_loss_spec("bernoulli:0.1").generate(100_000, rng)
    assert burst_lengths(g).max() > 2 * burst_lengths(b).max()


def test_same_seed_same_trace():
    m = parse_loss_spec("gilbert:0.1,3")
    assert np.array_equal(m.generate(500, np.random.default_rng(7)), m.generate(500, np.random.default_rng(7)))


@pytest.mark.parametrize("spec", ["", "foo", "bernoulli", "bernoulli:x", "bernoulli:1.5", "gilbert:0.1",
                                  "gilbert:0.1,0.5", "gilbert:0.9,1", "bernoulli:-0.1"])
def test_bad_specs_are_rejected(spec):
    with pytest.raises(TraceError):
        parse_loss_spec(spec)


def test_trace_round_trip(tmp_path):
    lost = np.array([0, 1, 1, 0, 0, 1], dtype=bool)
    write_trace(tmp_path / "t.txt", lost)
    assert (tmp_path / "t.txt").read_text() == "0\n1\n1\n0\n0\n1\n"
    assert np.array_equal(read_trace(tmp_path / "t.txt"), lost)


def test_trace_tolerates_whitespace_and_trailing_blank_lines(tmp_path):
    (tmp_path / "t.txt").write_text(" 0\r\n1 \n\n\n")
    assert read_trace(tmp_path / "t.txt").tolist() == [False, True]


@pytest.mark.parametrize("text,where", [("0\n2\n", ":2:"), ("0\nx\n", ":2:"), ("0\n\n1\n", ":2:"), ("", "empty")])
def test_trace_errors_name_the_line(tmp_path, text, where):
    (tmp_path / "t.txt").write_text(text)
    with pytest.raises(TraceError, match=where):
        read_trace(tmp_path / "t.txt")


def test_trace_missing_or_binary(tmp_path):
    with pytest.raises(TraceError, match="no such"):
        read_trace(tmp_path / "nope.txt")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(TraceError):
        read_trace(tmp_path / "b.txt")
