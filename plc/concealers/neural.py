"""The neural concealer: WaveRNN-style generation in onnxruntime, with a classic fallback.

At the first lost frame of a loss it

1. runs the conditioning network over the log-mel of the last
   ``context_frames`` frames (frames that were themselves concealed are
   flagged lost, as in training) and over the lost frames to come, which gives
   the conditioning of every frame of the loss in one call;
2. warms the autoregressive GRU up by teacher forcing over the last
   ``warmup_frames`` of played audio;
3. generates each lost frame free-running (one session call per 10 ms frame:
   the per-step loop is inside the graph), fading to silence by
   ``fade_end_ms`` of continuous loss.

When packets resume it generates one frame more and cross-fades into the
received audio at the lag (within ``max_align_lag``) where the generated
continuation matches the real audio best.

Real-time safety: if the model is missing or corrupt, raises, or would miss
``deadline_ms``, that frame is concealed by the classic ``neteq`` concealer
instead and ``stats.fallback_frames`` counts it. Received frames cost only a
copy into the history.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ..neural.features import FeatureConfig, deemphasize, log_mel_frames, mulaw_decode, mulaw_encode, preemphasize
from .base import Concealer, raised_cosine_fade

NOISE_TABLE_STEPS = 512
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "neural"


class ModelUnavailable(RuntimeError):
    """The neural model could not be loaded."""


class NeuralModel:
    """The three ONNX sessions and their configuration (single-threaded, CPU)."""

    def __init__(self, model_dir: Path) -> None:
        import onnxruntime as ort

        model_dir = Path(model_dir)
        try:
            info = json.loads((model_dir / "model.json").read_text())
            self.features = FeatureConfig(**info["features"])
            self.config = info["model"]
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 1
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.log_severity_level = 3
            self.cond = ort.InferenceSession(str(model_dir / "cond.onnx"), opts, providers=["CPUExecutionProvider"])
            self.warmup = ort.InferenceSession(str(model_dir / "warmup.onnx"), opts, providers=["CPUExecutionProvider"])
            self.generate = ort.InferenceSession(str(model_dir / "generate.onnx"), opts,
                                                 providers=["CPUExecutionProvider"])
        except Exception as exc:  # missing files, bad JSON, corrupt ONNX...
            raise ModelUnavailable(f"neural model in {model_dir} unusable: {type(exc).__name__}: {exc}") from exc
        self.info = info
        self.bunch = int(self.config["bunch"])
        self.levels = int(self.config["levels"])
        self.steps = int(self.config["frame_samples"]) // self.bunch
        self.cond_hidden = int(self.config["cond_hidden"])
        self.ar_hidden = int(self.config["ar_hidden"])
        self._prewarm()

    def _prewarm(self) -> None:
        """Run each graph once: onnxruntime's first call is slow (lazy allocation), calls must not be."""
        n_mels, cond_dim = self.features.n_mels, int(self.config["cond_dim"])
        try:
            self.cond.run(None, {"mel": np.zeros((1, 4, n_mels), np.float32), "lost": np.zeros((1, 4), np.float32),
                                 "h0": np.zeros((1, 1, self.cond_hidden), np.float32)})
            self.warmup.run(None, {"prev": np.zeros((1, 8, self.bunch), np.int64),
                                   "cond": np.zeros((1, 8, cond_dim), np.float32),
                                   "h0": np.zeros((1, 1, self.ar_hidden), np.float32)})
            self.generate.run(None, {"h0": np.zeros((1, self.ar_hidden), np.float32),
                                     "prev": np.zeros(self.bunch, np.int64),
                                     "cond": np.zeros((1, cond_dim), np.float32),
                                     "noise": np.zeros((self.steps, self.bunch, self.levels), np.float32),
                                     "inv_temperature": np.array(1.0, np.float32)})
        except Exception as exc:
            raise ModelUnavailable(f"neural model does not run: {type(exc).__name__}: {exc}") from exc


class NeuralConcealer(Concealer):
    """WaveRNN-style concealment (see the module docstring).

    Parameters
    ----------
    model_dir : path, optional
        Folder with ``model.json`` and the ONNX graphs (default: the shipped model).
    deadline_ms : float or None
        Per-frame budget. A frame whose generation is predicted to take longer
        (from the recent worst case) is concealed by the fallback. ``None``
        disables the check (offline use, where no deadline exists).
    temperature : float
        Sampling temperature of the mu-law softmax (lower: cleaner, less varied).
    fade_start_ms, fade_end_ms : float
        Continuous-loss time where the fade-out starts and where the output is silent.
    """

    name = "neural"

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 10, model_dir: Optional[str | Path] = None,
                 deadline_ms: Optional[float] = 5.0, temperature: float = 0.7, context_frames: int = 24,
                 warmup_frames: int = 2, fade_start_ms: float = 40.0, fade_end_ms: float = 120.0,
                 max_align_lag: int = 48, seed: int = 0, fallback_on_deadline: bool = True) -> None:
        from .neteq import NetEqConcealer

        if sample_rate != 16000 or frame_ms != 10:
            raise ValueError("the neural concealer runs at 16000 Hz with 10 ms frames")
        self.fallback = NetEqConcealer(sample_rate=sample_rate, frame_ms=frame_ms)
        self.deadline_ms = deadline_ms if fallback_on_deadline else None
        self.temperature = float(temperature)
        self.context_frames = context_frames
        self.warmup_frames = warmup_frames
        self.fade_start_ms, self.fade_end_ms = fade_start_ms, fade_end_ms
        self.max_align_lag = max_align_lag
        self.seed = seed
        self.load_error: Optional[str] = None
        try:
            self.model: Optional[NeuralModel] = NeuralModel(Path(model_dir) if model_dir else DEFAULT_MODEL_DIR)
        except ModelUnavailable as exc:
            self.model, self.load_error = None, str(exc)
        self.frame_times_ms: list[float] = []
        # Gumbel noise for sampling, drawn once: each frame reads a random window of it.
        noise_rng = np.random.default_rng(seed + 1)
        u = noise_rng.random((NOISE_TABLE_STEPS, 4, 256), dtype=np.float32).clip(1e-7, 1 - 1e-7)
        self._noise = -np.log(-np.log(u))
        super().__init__(sample_rate, frame_ms, history_ms=max(200, (context_frames + 2) * frame_ms))
        self._prewarm_loss_path()

    def _prewarm_loss_path(self) -> None:
        """Run one whole loss on silence now, so the first real loss of a call is not slow.

        The first start of a loss otherwise pays for building the mel filterbank
        and for onnxruntime's allocations at the real input shapes (~350 ms):
        in a live call that would block the audio thread.
        """
        if self.model is None:
            return
        try:
            self._start_loss()
            self._generate_frame(0)
        except Exception as exc:  # the model loads but cannot run on real shapes
            self.model, self.load_error = None, f"neural model does not run: {type(exc).__name__}: {exc}"
        self.reset()

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        self.fallback.reset()
        n_frames = self.history_samples // self.frame_samples
        self._lost_history = np.zeros(n_frames, dtype=bool)  # which history frames were concealed
        self._rng = np.random.default_rng(self.seed)
        self._h: Optional[np.ndarray] = None
        self._cond: Optional[np.ndarray] = None
        self._prev_q: Optional[np.ndarray] = None
        self._last_pre = 0.0   # last pre-emphasised sample (for de-emphasis state)
        self._last_out = 0.0   # last de-emphasised output sample
        self._using_fallback = False
        self._recent_ms = 0.0

    # --------------------------------------------------------------- received
    def process(self, frame: Optional[np.ndarray]) -> np.ndarray:
        if frame is not None and self.lost_frames == 0:
            self.fallback.process(frame)  # keep the fallback's history current (a copy)
        out = super().process(frame)
        self._lost_history[:-1] = self._lost_history[1:]
        self._lost_history[-1] = frame is None
        return out

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        was_fallback = self._using_fallback
        self._using_fallback = False
        fb_out = self.fallback.process(frame)
        if was_fallback or self.model is None or self._h is None:
            return fb_out
        lost_ms = self.lost_frames * self.frame_ms
        if lost_ms >= self.fade_end_ms:  # already silent: fade the real audio in
            n = min(self.frame_samples, 80)
            out = frame.copy()
            out[:n] *= raised_cosine_fade(n)
            return out
        try:
            extra = self._generate_frame(self.lost_frames)
        except Exception:
            self.stats.fallback_frames += 1
            return fb_out
        return self._align_and_crossfade(extra, frame)

    def _align_and_crossfade(self, generated: np.ndarray, frame: np.ndarray) -> np.ndarray:
        """Cross-fade from the generated continuation into ``frame`` at the best lag."""
        n = self.frame_samples - self.max_align_lag
        target = frame[:n]
        best_lag, best = 0, -np.inf
        tn = np.sqrt(np.dot(target, target)) + 1e-9
        for lag in range(0, self.max_align_lag + 1, 2):
            seg = generated[lag:lag + n]
            score = np.dot(seg, target) / (tn * (np.sqrt(np.dot(seg, seg)) + 1e-9))
            if score > best:
                best_lag, best = lag, score
        # Start from the sample that continues what was played, then move to the aligned lag over
        # the first samples, then cross-fade into the received frame.
        seg = generated[best_lag:best_lag + n]
        if best_lag:
            ramp = raised_cosine_fade(min(n, 32))
            seg = seg.copy()
            seg[:len(ramp)] = generated[:len(ramp)] * (1 - ramp) + seg[:len(ramp)] * ramp
        w = raised_cosine_fade(n)
        out = frame.copy()
        out[:n] = seg * (1 - w) + target * w
        return out

    # -------------------------------------------------------------- concealing
    def _conceal(self) -> np.ndarray:
        if self.model is None or self._using_fallback:
            return self._fallback_frame()
        if self.deadline_ms is not None and self._recent_ms > self.deadline_ms:
            self._recent_ms *= 0.5  # try the model again later
            self._using_fallback = True
            return self._fallback_frame()
        start = time.perf_counter()
        try:
            if self.lost_frames == 0:
                self._start_loss()
            out = self._generate_frame(self.lost_frames)
        except Exception:
            self._using_fallback = True
            return self._fallback_frame()
        elapsed = (time.perf_counter() - start) * 1000.0
        self.frame_times_ms.append(elapsed)
        self._recent_ms = max(elapsed, 0.9 * self._recent_ms)
        self.fallback._push_history(out)  # the fallback continues from what was played
        return out

    def _fallback_frame(self) -> np.ndarray:
        self.stats.fallback_frames += 1
        return self.fallback.process(None)

    def _gain(self, lost_frames_before: int) -> np.ndarray:
        t_ms = (lost_frames_before * self.frame_samples + np.arange(self.frame_samples)) * 1000.0 / self.sample_rate
        x = np.clip((t_ms - self.fade_start_ms) / (self.fade_end_ms - self.fade_start_ms), 0.0, 1.0)
        return (0.5 + 0.5 * np.cos(np.pi * x)).astype(np.float32)

    def _start_loss(self) -> None:
        """Conditioning for the whole loss, and the GRU state warmed up on recent audio."""
        m = self.model
        assert m is not None
        fc = m.features
        hop = fc.hop_samples
        ctx = min(self.context_frames, self.history_samples // hop - 1)
        max_lost = int(np.ceil(self.fade_end_ms / self.frame_ms)) + 1
        audio = self.history[-(ctx + 1) * hop:]  # one frame more for the first mel window
        mel = log_mel_frames(audio, fc)[1:]                          # (ctx, M)
        lost_flags = self._lost_history[-ctx:].astype(np.float32)
        mel_all = np.concatenate([mel, np.zeros((max_lost, fc.n_mels), np.float32)])[None]
        lost_all = np.concatenate([lost_flags, np.ones(max_lost, np.float32)])[None]
        cond, _ = m.cond.run(None, {"mel": mel_all, "lost": lost_all,
                                     "h0": np.zeros((1, 1, m.cond_hidden), np.float32)})
        # cond[t] (after frame t) conditions frame t+1: frame ctx-1+k+1 is lost frame k.
        self._cond = cond[0, ctx - 1:]                                  # [0] = first lost frame
        warm = self.warmup_frames
        warm_cond = cond[0, ctx - 1 - warm:ctx - 1]                     # conditions of the last `warm` frames
        seg = self.history[-(warm * hop + 1):]
        pre = preemphasize(seg[1:], fc.preemphasis, seg[0])
        q = mulaw_encode(pre, fc.mu)
        prev_start = self.history[-(warm * hop + 1 + m.bunch):-(warm * hop + 1)]
        q_prev0 = mulaw_encode(preemphasize(prev_start, fc.preemphasis), fc.mu)
        bunches = np.concatenate([q_prev0, q]).reshape(-1, m.bunch)  # previous bunch of each step, and the last
        steps_per_frame = hop // m.bunch
        cond_steps = np.repeat(warm_cond, steps_per_frame, axis=0)[None].astype(np.float32)
        (h,) = m.warmup.run(None, {"prev": bunches[None, :-1].astype(np.int64), "cond": cond_steps,
                                    "h0": np.zeros((1, 1, m.ar_hidden), np.float32)})
        self._h = h[0]
        self._prev_q = bunches[-1].astype(np.int64)
        self._last_pre = float(pre[-1])
        self._last_out = float(self.history[-1])

    def _generate_frame(self, lost_frames_before: int) -> np.ndarray:
        m = self.model
        assert m is not None and self._cond is not None
        if lost_frames_before * self.frame_ms >= self.fade_end_ms:
            return np.zeros(self.frame_samples, np.float32)
        k = min(lost_frames_before, len(self._cond) - 1)
        start = int(self._rng.integers(0, len(self._noise) - m.steps))
        noise = self._noise[start:start + m.steps, :m.bunch, :m.levels]
        q, h = m.generate.run(None, {"h0": self._h, "prev": self._prev_q, "cond": self._cond[k:k + 1],
                                     "noise": noise,
                                     "inv_temperature": np.array(1.0 / self.temperature, np.float32)})
        self._h = h
        self._prev_q = q[-m.bunch:].astype(np.int64)
        pre = mulaw_decode(q, m.features.mu)
        out = deemphasize(pre, m.features.preemphasis, self._last_out)
        self._last_out = float(out[-1])
        return out * self._gain(lost_frames_before)
