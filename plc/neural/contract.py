"""What training (``plc export``) and the runtime (``NeuralConcealer``) must agree on, defined once.

Both sides import this module (numpy only, like the rest of :mod:`plc.neural`):

* the export format: :data:`FORMAT_VERSION` of ``model.json``, the audio it is for;
* the three graphs, their files (hashed in :data:`GRAPH_FILES` order) and their input and output
  names (:data:`START`, :data:`COND`, :data:`GENERATE`);
* the context lengths: log-mel frames the conditioning reads before a loss
  (:data:`CONTEXT_FRAMES`), of which the autoregressive GRU is warmed up on the last
  :data:`WARMUP_FRAMES`, and the longest loss worth learning (:data:`MAX_LOST_FRAMES`);
* the fades: the runtime's (:data:`VOICED_FADE_MS`, :data:`UNVOICED_FADE_MS`, silent by
  :data:`SILENT_BY_MS`), the one the training loss weights the concealment by
  (:data:`TRAINING_FADE_MS`), and the gain curve they share (:func:`fade_gains`).

A change here is a change of the exported format: bump :data:`FORMAT_VERSION` when the graphs or
``model.json`` change, so the runtime refuses models it cannot read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ``model.json``'s ``format_version``: the runtime reads this one only (re-export older models).
FORMAT_VERSION = 3
#: The audio the model is for: 16 kHz, 10 ms frames.
SAMPLE_RATE = 16000
FRAME_SAMPLES = 160


@dataclass(frozen=True)
class Graph:
    """One exported ONNX graph: its file and its input and output names, in call order."""

    file: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def feed(self, *values) -> dict:
        """The ``onnxruntime`` input dict of ``values``, given in :attr:`inputs` order."""
        if len(values) != len(self.inputs):
            raise TypeError(f"{self.file} takes {len(self.inputs)} inputs ({', '.join(self.inputs)}), "
                            f"got {len(values)}")
        return dict(zip(self.inputs, values))


#: The first lost frame in one call: conditioning over the context, warm-up, the frame.
START = Graph("start.onnx", ("mel", "lost", "history", "lag", "voicing", "gain", "noise"),
              ("frame", "h", "cond", "cond_h"))
#: One conditioning step (or a run of them) for later lost frames.
COND = Graph("cond.onnx", ("mel", "lost", "h0"), ("cond", "h"))
#: One 10 ms frame of free-running generation.
GENERATE = Graph("generate.onnx", ("h0", "history", "lag", "cond", "voicing", "gain", "noise"), ("frame", "h"))
#: The graph files, in the order their bytes are hashed into ``onnx_sha256``.
GRAPH_FILES = (START.file, COND.file, GENERATE.file)

#: Log-mel frames of real audio before a loss that the conditioning network reads.
CONTEXT_FRAMES = 24
#: Of those, the last frames over which the autoregressive GRU is teacher forced (warmed up).
WARMUP_FRAMES = 4
#: Every concealment is silent by this much continuous loss, ms.
SILENT_BY_MS = 120.0
#: The longest loss worth learning: silent from then on.
MAX_LOST_FRAMES = int(SILENT_BY_MS) * SAMPLE_RATE // 1000 // FRAME_SAMPLES

#: The runtime's fades (start, silent) in ms of continuous loss, after voiced and after unvoiced
#: audio (tuned on training clips, MODEL.md).
VOICED_FADE_MS = (60.0, SILENT_BY_MS)
UNVOICED_FADE_MS = (40.0, SILENT_BY_MS)
#: The fade the training loss weights the concealment by (what a listener hears of it): the
#: runtime's single fade when v3 was trained; the runtime has since held voiced audio at full
#: level to 60 ms (:data:`VOICED_FADE_MS`).
TRAINING_FADE_MS = (40.0, SILENT_BY_MS)


def check_fades(*fades_ms: tuple[float, float]) -> None:
    """Raise ``ValueError`` unless each ``(start_ms, end_ms)`` fade ends by :data:`SILENT_BY_MS` of loss."""
    for start_ms, end_ms in fades_ms:
        if not 0 <= start_ms < end_ms <= SILENT_BY_MS:
            raise ValueError(f"fade {start_ms:g} -> {end_ms:g} ms: fades must satisfy 0 <= start < end <= "
                             f"{SILENT_BY_MS:g} ms (silent by {SILENT_BY_MS:g} ms of loss)")


def fade_gains(t_ms: np.ndarray, fade_ms: tuple[float, float]) -> np.ndarray:
    """Gain at continuous-loss times ``t_ms``: 1 until ``fade_ms[0]``, a raised cosine to 0 at ``fade_ms[1]``."""
    start_ms, end_ms = fade_ms
    x = np.clip((np.asarray(t_ms, dtype=np.float64) - start_ms) / (end_ms - start_ms), 0.0, 1.0)
    return 0.5 + 0.5 * np.cos(np.pi * x)
