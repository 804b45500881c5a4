"""Objective quality metrics for packet-loss concealment.

All functions take 1-D float numpy arrays (mono, nominally in [-1, 1]); inputs
at another sample rate are resampled to 16 kHz with ``scipy.signal.resample_poly``.
Reference and degraded signals should have the same length; if they differ,
both are truncated to the shorter one.

* :func:`pesq_wb` - ITU-T P.862.2 wide-band PESQ (``pesq`` package), NaN when
  PESQ cannot score the input (e.g. silence).
* :func:`stoi` - short-time objective intelligibility (``pystoi``).
* :func:`plcmos` - non-intrusive PLCMOS v2 (``speechmos``; Microsoft's
  INTERSPEECH 2023 model, shipped in the package), made deterministic per seed
  without touching numpy's global RNG, ONNX Runtime on one thread.
* :func:`compute_all` - all of the above plus, optionally, ASR word errors.

:data:`SIGNAL_METRICS` is the registry of the signal metrics: ``plc eval``'s runner computes
them, its summary bootstraps them and its report tabulates and plots them from there (a new
metric is a function here and one :class:`SignalMetric` entry); :data:`HEADLINE_METRICS` are
those the paired-difference and per-corpus columns show. Word error rate is aggregated over the
corpus, not per clip, and keeps its own columns.
"""

from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field
from math import gcd
from typing import Callable

import numpy as np

__all__ = [
    "SAMPLE_RATE",
    "pesq_wb",
    "stoi",
    "plcmos",
    "compute_all",
    "MetricResult",
    "SignalMetric",
    "SIGNAL_METRICS",
    "HEADLINE_METRICS",
    "WER_LABEL",
    "signal_metric_names",
    "to_16k",
]

SAMPLE_RATE = 16000
PLCMOS_EMBED_ROUNDS = 15  # as in speechmos.plcmos.PLCMOS


def to_16k(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """1-D float64 copy of ``x`` at 16 kHz (polyphase resampling if needed)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected a 1-D (mono) signal, got shape {x.shape}")
    sample_rate = int(sample_rate)
    if sample_rate != SAMPLE_RATE:
        from scipy.signal import resample_poly

        g = gcd(SAMPLE_RATE, sample_rate)
        x = resample_poly(x, SAMPLE_RATE // g, sample_rate // g)
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


def _pair(ref, deg, sample_rate):
    r = to_16k(ref, sample_rate)
    d = to_16k(deg, sample_rate)
    n = min(len(r), len(d))
    return r[:n], d[:n]


# --------------------------------------------------------------------------- PESQ
def pesq_wb(ref: np.ndarray, deg: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (MOS-LQO, about 1.04..4.64); NaN if PESQ can't score it."""
    from pesq import PesqError, pesq

    r, d = _pair(ref, deg, sample_rate)
    if len(r) == 0 or not (np.any(r) and np.any(d)):
        return float("nan")  # all-zero input: pesq would divide by zero / find no utterance
    try:
        with np.errstate(all="ignore"):
            return float(pesq(SAMPLE_RATE, r, d, "wb"))
    except (PesqError, ValueError, RuntimeError):
        return float("nan")


# --------------------------------------------------------------------------- STOI
def stoi(ref: np.ndarray, deg: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
    """Classic STOI (0..1, extended=False)."""
    from pystoi import stoi as _stoi

    r, d = _pair(ref, deg, sample_rate)
    if len(r) == 0:
        return float("nan")
    return float(_stoi(r, d, SAMPLE_RATE, extended=False))


# --------------------------------------------------------------------------- PLCMOS
_plcmos_lock = threading.Lock()
_plcmos_model = None


def _get_plcmos():
    """PLCMOS v2 object (speechmos feature code) with a 1-thread ORT session, cached."""
    global _plcmos_model
    with _plcmos_lock:
        if _plcmos_model is None:
            import onnxruntime as ort
            from speechmos import plcmos as _sm

            model = _sm.PLCMOS.__new__(_sm.PLCMOS)  # skip its __init__ (default thread pool)
            model.model_name = "plcmos_v2"
            model.onnx_name = model.model_name + ".onnx"
            model.max_lens = 999999999999
            model.embed_rounds = PLCMOS_EMBED_ROUNDS
            model.model_path = os.path.join(
                os.path.dirname(os.path.abspath(_sm.__file__)), "plcmos_models", model.onnx_name
            )
            so = ort.SessionOptions()
            so.intra_op_num_threads = 1
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.log_severity_level = 3
            model.session = ort.InferenceSession(
                model.model_path, sess_options=so, providers=["CPUExecutionProvider"]
            )
            _plcmos_model = model
        return _plcmos_model


def plcmos(deg: np.ndarray, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> float:
    """Non-intrusive PLCMOS v2 score (about 1..5) of a degraded/concealed signal.

    speechmos averages the model over 15 random "rater" embeddings drawn from
    numpy's global RNG; here they come from ``np.random.RandomState(seed)``, so
    the score is deterministic for a seed (identical to speechmos after
    ``np.random.seed(seed)``) and the caller's global RNG state is untouched.
    """
    x = np.clip(to_16k(deg, sample_rate), -1.0, 1.0).astype(np.float32)
    if len(x) == 0:
        return float("nan")
    model = _get_plcmos()
    feats = np.float32(model.stft_transform(x))[np.newaxis, np.newaxis, ...]
    rng = np.random.RandomState(seed)
    total = 0.0
    for _ in range(model.embed_rounds):
        embed = rng.normal(size=(1, 64)).astype(np.float32)
        out = model.session.run(None, {"degraded_audio": feats, "rater_embed": embed})[0]
        total += float(np.asarray(out).reshape(-1)[0])
    return total / model.embed_rounds


# ---------------------------------------------------------------------- registry
@dataclass(frozen=True)
class SignalMetric:
    """One signal metric of ``plc eval``.

    Attributes
    ----------
    name : str
        Its column in results.csv and key in summary.json.
    label : str
        Its name in the report's tables and plots.
    short : str
        Its name in the paired-difference columns (``ΔPLCMOS``).
    digits : int
        Decimals in the report's tables.
    intrusive : bool
        It compares the output with the reference sample by sample (so it needs them aligned);
        otherwise it scores the output alone.
    score : callable
        ``score(ref, deg, seed)`` on 16 kHz signals (``ref`` is None for a non-intrusive one).
    """

    name: str
    label: str
    short: str
    digits: int
    intrusive: bool
    score: Callable[[np.ndarray | None, np.ndarray, int], float]


SIGNAL_METRICS: tuple[SignalMetric, ...] = (
    SignalMetric("pesq", "PESQ-WB", "PESQ", 2, True, lambda ref, deg, seed: pesq_wb(ref, deg, SAMPLE_RATE)),
    SignalMetric("stoi", "STOI", "STOI", 3, True, lambda ref, deg, seed: stoi(ref, deg, SAMPLE_RATE)),
    SignalMetric("plcmos", "PLCMOS v2", "PLCMOS", 2, False,
                 lambda ref, deg, seed: plcmos(deg, SAMPLE_RATE, seed=seed)),
)
#: The metrics the paired-difference and per-corpus columns show, in that order.
HEADLINE_METRICS = ("plcmos", "pesq")
#: Word error rate's name in the report.
WER_LABEL = "WER %"


def signal_metric_names(aligned: bool = True) -> tuple[str, ...]:
    """The signal metrics' names; with ``aligned=False`` only those that need no aligned reference."""
    return tuple(m.name for m in SIGNAL_METRICS if aligned or not m.intrusive)


def signal_metric(name: str) -> SignalMetric:
    return next(m for m in SIGNAL_METRICS if m.name == name)


# --------------------------------------------------------------------------- all
@dataclass
class MetricResult:
    #: Each signal metric's score (NaN where it was not computed).
    signals: dict = field(default_factory=lambda: {m.name: float("nan") for m in SIGNAL_METRICS})
    hypothesis: str | None = None
    reference_text: str | None = None
    wer: float | None = None
    substitutions: int | None = None
    deletions: int | None = None
    insertions: int | None = None
    hits: int | None = None
    ref_words: int | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("signals"))
        d.update(d.pop("extra"))
        return d

    def __getattr__(self, name: str):
        """A signal metric's score by name (``result.pesq``)."""
        signals = self.__dict__.get("signals", {})
        if name in signals:
            return signals[name]
        raise AttributeError(name)

    # dict-like read access, so callers can use result["pesq"]
    def __getitem__(self, key):
        return self.to_dict()[key]

    def keys(self):
        return self.to_dict().keys()


def compute_all(
    ref: np.ndarray,
    deg: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    transcript: str | None = None,
    asr=None,
    seed: int = 0,
    metrics: tuple[str, ...] = signal_metric_names(),
) -> MetricResult:
    """The signal metrics (:data:`SIGNAL_METRICS`) of ``deg`` against ``ref``; with ``transcript`` and
    ``asr`` (an :class:`eval.asr.Transcriber` or any object with
    ``transcribe(audio, sample_rate) -> str``) also the ASR hypothesis of ``deg``
    and word error counts (jiwer on normalised text, :func:`eval.text_norm.word_errors`).
    ``metrics`` selects which signal metrics to run (others stay NaN). Without the intrusive
    ones (PESQ, STOI), ``deg`` is scored whole: it need not be aligned with ``ref``, nor as long.
    """
    chosen = [m for m in SIGNAL_METRICS if m.name in metrics]
    if any(m.intrusive for m in chosen):
        r, d = _pair(ref, deg, sample_rate)
    else:
        r, d = None, to_16k(deg, sample_rate)
    res = MetricResult()
    for m in chosen:
        res.signals[m.name] = m.score(r, d, seed)
    if transcript is not None and asr is not None:
        from .text_norm import word_errors

        hyp = asr.transcribe(np.clip(d, -1.0, 1.0).astype(np.float32), SAMPLE_RATE)
        we = word_errors(transcript, hyp)
        res.hypothesis = hyp
        res.reference_text = transcript
        res.wer = float(we["wer"])
        res.substitutions = we["substitutions"]
        res.deletions = we["deletions"]
        res.insertions = we["insertions"]
        res.hits = we["hits"]
        res.ref_words = we["ref_words"]
    return res
