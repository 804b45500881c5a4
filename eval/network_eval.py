"""``plc eval --network SPEC``: each clip through ``plc netsim``'s network model and jitter buffer.

The clip is cut into 20 ms RTP packets (the ``--codec`` payload: PCM or Opus at
``--bitrate``), sent through the network model of SPEC (:func:`jitterbuffer.network.parse_network`,
the syntax of ``plc netsim --network``), seeded per clip like the loss traces (the same
network for every method, another one for every clip), and played out every 10 ms by the
NetEQ-style jitter buffer with each method as its concealer
(:func:`jitterbuffer.netsim.simulate`).

The played audio starts later than the clip (the buffering delay) and is stretched and
squeezed where the buffer accelerates or expands, so it is not sample-aligned with the
clip: only the non-intrusive PLCMOS and the word error rate are scored; PESQ and STOI stay
blank for these rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plc.loss_models import burst_lengths
from .runner import Job, Rendered, trace_seed

#: Condition labels of network rows start with this.
PREFIX = "net:"
PACKET_MS = 20


@dataclass(frozen=True)
class NetworkCondition:
    """A network model (a ``plc netsim --network`` SPEC) as an evaluation condition."""

    text: str

    @property
    def spec(self) -> str:
        """The condition's label in results and reports."""
        return PREFIX + " ".join(self.text.split())

    def network(self, clip_id: str, seed: int):
        """The clip's seeded :class:`~jitterbuffer.network.NetworkSpec`."""
        from jitterbuffer.network import parse_network

        return parse_network(self.text, seed=trace_seed(clip_id, self.spec, seed))

    def render(self, ref: np.ndarray, method: str, job: Job) -> Rendered:
        from jitterbuffer.jitter_buffer import JitterBufferConfig
        from jitterbuffer.netsim import simulate
        from plc.codecs import get_codec
        from plc.concealers import make_concealer

        from .runner import split_variant

        method, fec = split_variant(method)
        net = self.network(job.clip.clip_id, job.seed)
        n_packets = int(np.ceil(len(ref) / (16000 * PACKET_MS / 1000)))
        arrivals = net.simulate(n_packets, PACKET_MS)
        # A simulation, not a call: no real-time deadline, so a busy machine does not change the output.
        concealer = make_concealer(method, realtime=False)
        fec_options = {"fec": fec}
        if fec and job.expected_loss_percent is not None:
            fec_options["expected_loss_percent"] = job.expected_loss_percent
        result = simulate(ref, arrivals, JitterBufferConfig(), method=method, codec=job.codec, seed=job.seed,
                          spec=net, concealer=concealer, bitrate_bps=job.bitrate_bps, **fec_options)
        got = np.zeros(n_packets, dtype=bool)
        for a in arrivals:
            if a.arrival_ms is not None and a.seq < n_packets:
                got[a.seq] = True
        bursts = burst_lengths(~got)
        s = result.stats
        coded = get_codec(job.codec).lossy
        return Rendered(result.audio, loss_rate=float(s["networkLossRate"] + s["lateLossRate"]),
                        max_burst=int(bursts.max()) if len(bursts) else 0,
                        fallback_frames=int(s.get("fallbackFrames") or 0),
                        delay_ms=s.get("playoutDelayMeanMs"), aligned=False,
                        lost_packets=int((~got).sum()) if coded else None,
                        fec_recovered=int(s["fecPacketsRecovered"]) if coded else None,
                        payload_kbps=s["payloadBitrateBps"] / 1000.0 if coded else None)


def parse_network_condition(text: str) -> NetworkCondition:
    """A :class:`NetworkCondition` from ``--network SPEC``; raises ``jitterbuffer.network.NetworkError``."""
    from jitterbuffer.network import parse_network

    parse_network(text)  # validates
    return NetworkCondition(text)
