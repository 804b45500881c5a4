"""The network model: SPEC strings, TOML files, arrival CSVs and the simulated impairments."""

from __future__ import annotations

import numpy as np
import pytest

from jitterbuffer.network import (NetworkError, NetworkSpec, parse_network, read_arrivals_csv,
                                  write_arrivals_csv)


def test_spec_string_with_units_and_separators():
    s = parse_network("delay=0.05s, jitter=30ms dist=lognormal spike=300 spike_every=10s loss=5% burst=3 "
                      "reorder=0.005 dup=1% drift=-1% seed=7 fifo=0 spike_at=1;2.5")
    assert (s.delay, s.jitter, s.dist, s.spike, s.spike_every) == (50.0, 30.0, "lognormal", 300.0, 10.0)
    assert (s.loss, s.burst, s.reorder, s.dup, s.drift, s.seed, s.fifo) == (0.05, 3.0, 0.005, 0.01, -0.01, 7, False)
    assert s.spike_at == (1.0, 2.5)


def test_presets_and_overrides():
    s = parse_network("heavy,seed=3")
    assert (s.delay, s.jitter, s.spike, s.loss, s.burst, s.seed) == (40.0, 30.0, 300.0, 0.05, 3.0, 3)
    assert parse_network("heavy", seed=9).seed == 9


@pytest.mark.parametrize("bad, msg", [
    ("", "empty"), ("delay", "key=value"), ("bogus=1", "unknown network parameter"), ("delay=abc", "not a number"),
    ("loss=5", "probability"), ("loss=150%", "probability"), ("drift=10%", "drift"), ("dist=cauchy", "dist"),
    ("delay=-5", "delay must be a time from 0"), ("burst=0.5", "burst"), ("jitter=5%", "time"), ("seed=x", "integer"),
    ("nothere.toml", "no such"), ("shape=1.5 jitter=10", "shape"), ("delay=", "no value"),
])
def test_bad_specs_are_one_line_errors(bad, msg):
    with pytest.raises(NetworkError, match=msg) as e:
        parse_network(bad)
    assert "\n" not in str(e.value)


def test_toml_file(tmp_path):
    f = tmp_path / "net.toml"
    f.write_text('[network]\npreset = "heavy"\ndelay = 60\njitter = "10ms"\nloss = 0.02\nspike_at = [1, 2]\n')
    s = parse_network(str(f))
    assert (s.delay, s.jitter, s.loss, s.spike, s.spike_at) == (60.0, 10.0, 0.02, 300.0, (1.0, 2.0))
    f.write_text("delay = [")
    with pytest.raises(NetworkError, match="not valid TOML"):
        parse_network(str(f))
    f.write_text("colour = 3")
    with pytest.raises(NetworkError, match="unknown network parameter"):
        parse_network(str(f))


def test_simulation_is_seeded_and_counts():
    a = parse_network("heavy,seed=1").simulate(2000)
    b = parse_network("heavy,seed=1").simulate(2000)
    c = parse_network("heavy,seed=2").simulate(2000)
    assert a == b and a != c
    assert len(a) >= 2000 and {x.seq for x in a} == set(range(2000))


def test_gilbert_elliott_loss_rate_and_bursts():
    arr = NetworkSpec(loss=0.05, burst=3, seed=4).simulate(40000)
    lost = np.array([x.arrival_ms is None for x in arr])
    assert 0.04 < lost.mean() < 0.06
    starts = np.count_nonzero(np.diff(lost.astype(int)) == 1)
    assert 2.5 < lost.sum() / starts < 3.5  # mean burst length


def test_fifo_spikes_duplicates_and_drift():
    spec = NetworkSpec(delay=40, jitter=30, dist="exponential", spike=500, spike_at=(2.0,), dup=0.02, drift=0.01,
                       seed=5)
    arr = spec.simulate(500)
    firsts = {}
    for x in arr:
        firsts.setdefault(x.seq, x)
    arrival = np.array([firsts[k].arrival_ms for k in range(500)])
    assert np.all(np.diff(arrival) >= 0)  # in order
    assert sum(1 for x in arr) - 500 > 3  # duplicates
    send = np.array([firsts[k].send_ms for k in range(500)])
    np.testing.assert_allclose(np.diff(send), 20 / 1.01)  # the sender's clock runs 1% fast
    k = int(np.searchsorted(send, 2000.0))
    assert arrival[k] - send[k] >= 540 and spec.spikes == [(2000.0, 500.0)]
    assert np.mean(np.diff(arrival[k:k + 20])) < 8  # the ones sent during the spike arrive in a burst


def test_reordering_without_fifo():
    arr = NetworkSpec(delay=40, reorder=0.05, reorder_delay=60, seed=2).simulate(5000)
    arrival = np.array([x.arrival_ms for x in arr])
    assert 0.02 < np.mean(np.diff(arrival) < 0) < 0.08


def test_arrivals_csv_round_trip_and_errors(tmp_path):
    arr = parse_network("delay=40 jitter=10 loss=10% dup=5% seed=1").simulate(300)
    f = tmp_path / "a.csv"
    write_arrivals_csv(f, arr)
    back = read_arrivals_csv(f)
    assert [(x.seq, x.arrival_ms is None) for x in back] == [(x.seq, x.arrival_ms is None) for x in arr]
    for text, msg in [("", "empty"), ("a,b,c\n1,2,3\n", "header"), ("seq,send_ms,arrival_ms\nx,1,2\n", ":2:"),
                      ("seq,send_ms,arrival_ms\n-1,1,2\n", "seq must be"), ("seq,send_ms,arrival_ms\n", "no packets")]:
        f.write_text(text)
        with pytest.raises(NetworkError, match=msg):
            read_arrivals_csv(f)
    with pytest.raises(NetworkError, match="no such"):
        read_arrivals_csv(tmp_path / "missing.csv")
