"""The neural concealer: WaveRNN-style generation in onnxruntime.

At the first lost frame of a loss it measures the pitch lag, voicing and
level of the last real audio and makes one ``start.onnx`` call that

1. runs the conditioning network over the log-mel of the last
   ``context_frames`` frames (frames that were themselves concealed are
   flagged lost, as in training), which gives the conditioning of the first
   lost frame (the log-mel of each played frame is computed as it is played,
   so the first lost frame does not pay for all of them);
2. warms the autoregressive GRU up by teacher forcing over the last
   ``warmup_frames`` of played audio;
3. generates the first lost frame free-running.

Each later lost frame is one conditioning step (mel zeroed, flagged lost) and
one ``generate.onnx`` call (its sub-frame step loop is inside the graph), fading
out by 120 ms of continuous loss at the latest (from 60 ms on). As it fades, the
call's background noise fills in (``comfort_noise``: NetEQ's background-noise
estimate, :class:`~.noise_continuation.ComfortNoise`), so a long loss goes on as
that noise rather than digital silence; the generated speech is gone by 120 ms.

After *unvoiced* audio (no pitch: fricatives, breath, noise, pauses) there is
nothing for the model to continue but a hiss, which it improvises badly; by
default such a loss is continued by LPC-shaped noise drawn from the recent
residual, as SILK's PLC does (:mod:`.noise_continuation`; ``unvoiced="model"``
uses the network there too), fading from 40 ms to silence at 120 ms.

When packets resume it generates one frame more and cross-fades into the
received audio (over ``merge_samples``) at the lag (within ``max_align_lag``)
where the generated continuation matches the real audio best.

Where the codec has its own concealment (``uses_codec_concealment``: libopus' PLC
in the offline Opus path, the jitter buffer and calls), the codec's coding mode
decides who conceals a loss (``defer_to_codec``): SILK and hybrid Opus (the
speech modes, which every Opus stream under ~40 kbit/s uses) have a concealment
the model does not beat when the decoder's state does not follow the model
(MODEL.md: it lost PLCMOS at every share and moment tried), and the packet after
the loss decodes from its state; there the loss
plays the codec's concealment and resumes as the codec does, merged from its
unplayed concealment where the decoder ran ahead of the playout (the jitter
buffer asks libopus for 20 ms at a time). In CELT mode (music, and the high
bitrates aiortc sends) the model conceals: it beats CELT's concealment.
In SILK and hybrid mode the model still makes the first packet of a loss after voiced audio,
*in step with the decoder* (``steer_codec``): its continuation is Opus-coded at the
receiver and decoded in place of libopus' PLC (:mod:`plc.codecs.opus_steering`), so
what plays is the model's speech as the codec renders it and the decoder's state
follows it; libopus' PLC continues from there and the next packet decodes as usual.

Real-time safety: ``make_concealer("neural")`` wraps it in
:class:`~plc.concealers.fallback.FallbackConcealer` with the classic ``neteq`` and a
5 ms deadline: if the model is missing or corrupt, fails, or would miss the deadline,
that frame is concealed by ``neteq`` instead and ``stats.fallback_frames`` counts it
(``fallback_reason`` says why). Here the model only says so: a model that did not load
makes :attr:`NeuralConcealer.unavailable_reason` say why, and a frame it cannot make or
must not play raises :class:`~plc.concealers.base.ConcealmentError` with the reason.
A model is checked before it is trusted: its description and hash
(:mod:`plc.neural.description`) and a self-test on a synthetic vowel at load;
then every frame it makes must be finite and no louder than the level bound
(:meth:`NeuralConcealer._frame_problem`). Received frames cost a copy into the
history, the log-mel of the newest frame and the background-noise estimate's
energy (its LPC only on quiet frames).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Collection, Optional

import numpy as np

from ..dsp import DEFAULT_MAX_ALIGN_LAG, DEFAULT_MERGE_SAMPLES, align_and_crossfade, raised_cosine_fade
from ..neural import contract
from ..neural.contract import check_fades, fade_gains
from ..neural.description import ModelDescriptionError, audio_needed, check_model_description, read_graphs
from ..neural.features import FeatureConfig, effective_lag, frame_gain, log_mel_frames, log_mel_last_frame, pitch_lag
from .base import Concealer, ConcealerStats, ConcealmentError
from .noise_continuation import ComfortNoise, NoiseContinuation

#: Pitch correlation from which audio counts as voiced (continued by the model); tuned in MODEL.md.
DEFAULT_VOICED_THRESHOLD = 0.75
#: What may continue a loss after unvoiced audio (``NeuralConcealer(unvoiced=...)``).
UNVOICED_CHOICES = ("noise", "model")
#: Default scale of the generator's noise input (1: as trained).
DEFAULT_NOISE_SCALE = 1.0
#: The codec modes (:attr:`~plc.codecs.payload.PayloadDecoder.mode`) whose own concealment plays a
#: loss instead of the model, where it is fed: Opus' SILK and hybrid modes, whose PLC beat the model
#: at every share and moment tried on training clips, while CELT's lost to it (MODEL.md).
DEFAULT_DEFER_TO_CODEC = ("silk", "hybrid")
#: Whether a loss goes on as the call's background noise (comfort noise) as the model's
#: continuation fades, instead of digital silence (tuned on training clips in MODEL.md).
DEFAULT_COMFORT_NOISE = True
#: Propose the model's continuation of voiced audio to a codec that can be steered with it
#: (Opus in SILK or hybrid mode: decoder in step, :mod:`plc.codecs.opus_steering`; MODEL.md).
DEFAULT_STEER_CODEC = True
#: End a burst's codec concealment on its way into the next packet where it is at hand
#: (:mod:`.gap_end`; MODEL.md, "The end of a gap").
DEFAULT_END_GAPS_AHEAD = True
DEFAULT_MODEL_DIR = Path(__file__).resolve().parents[1] / "assets" / "neural"
#: Environment variable naming another model folder (``plc eval --neural-model`` sets it).
MODEL_DIR_ENV = "PLC_NEURAL_MODEL"
#: The frame check: a concealed frame may be at most this many times (in RMS) the loudest 10 ms of
#: the last ``LEVEL_REFERENCE_MS`` before the loss, counted from at least ``LEVEL_FLOOR_RMS`` (-40 dBFS).
#: On all 367 dev clips under gilbert:0.2,6 (16,688 frames made by the model) the largest ratio
#: was 2.95 (1.45 for the noise continuation); weights scaled by 1e30 give about 18.
MAX_LEVEL_RATIO = 4.0
LEVEL_REFERENCE_MS = 100
LEVEL_FLOOR_RMS = 0.01
#: The load self-test's first concealed frame of a steady vowel must be at least this loud relative
#: to the vowel, dB (the shipped model: -1 dB; an untrained one: -8 dB; zeroed weights: silence).
SELF_TEST_MIN_LEVEL_DB = -20.0


def _self_test_vowel(n_samples: int, sample_rate: int) -> np.ndarray:
    """A steady synthetic vowel (150 Hz, seven harmonics, -23 dBFS RMS) for the load self-test."""
    t = np.arange(n_samples) / sample_rate
    x = sum(np.sin(2 * np.pi * 150.0 * k * t + k) / k for k in range(1, 8))
    return (0.07 * x / np.sqrt(np.mean(x * x))).astype(np.float32)


def check_merge(max_align_lag: int, merge_samples: int, frame_samples: int = 160) -> None:
    """Raise ``ValueError`` unless the lag search and the cross-fade back fit in one frame."""
    if not (0 <= max_align_lag and 1 <= merge_samples and max_align_lag + merge_samples <= frame_samples):
        raise ValueError(f"max_align_lag ({max_align_lag}) + merge_samples ({merge_samples}) must fit in "
                         f"one frame of {frame_samples} samples")


def check_noise_scale(noise_scale: float) -> None:
    """Raise ``ValueError`` unless ``noise_scale`` is in [0, 4]."""
    if not 0.0 <= noise_scale <= 4.0:
        raise ValueError(f"noise_scale must be in [0, 4], got {noise_scale}")


def select_model_dir(model_dir: str | os.PathLike) -> None:
    """Make ``model_dir`` the default model of this process and of the processes it starts.

    The model is loaded and run once first: a folder whose graphs are missing, corrupt or of
    another format would otherwise be concealed by the ``neteq`` fallback frame after frame,
    and an evaluation of it would silently score the fallback. Raises ``ValueError`` (with the
    reason) if the folder holds no usable model.
    """
    check_model_dir(model_dir)
    os.environ[MODEL_DIR_ENV] = str(Path(model_dir).resolve())


def check_model_dir(model_dir: str | os.PathLike) -> None:
    """Raise ``ValueError`` (with the reason) unless ``model_dir`` holds an exported model that
    loads, runs in this runtime and passes the concealer's self-test."""
    if not (Path(model_dir) / "model.json").is_file():
        raise ValueError(f"{model_dir} holds no model.json")
    error = NeuralConcealer(model_dir=model_dir).load_error
    if error:
        raise ValueError(error)


def default_model_dir() -> Path:
    """``$PLC_NEURAL_MODEL`` if set, else the shipped model."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else DEFAULT_MODEL_DIR


class ModelUnavailable(RuntimeError):
    """The neural model could not be loaded."""


class NeuralModel:
    """The three ONNX sessions and their configuration (single-threaded, CPU).

    Loading checks the description (:mod:`plc.neural.description`: every field the runtime reads,
    and the graphs against ``onnx_sha256``) and runs each graph once; any problem raises
    :class:`ModelUnavailable` with the reason, never anything else.
    """

    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        try:
            self._load(model_dir)
        except ModelUnavailable:
            raise
        except ModelDescriptionError as exc:
            raise ModelUnavailable(f"neural model in {model_dir} unusable: {exc}") from exc
        except Exception as exc:  # missing files, bad JSON, corrupt ONNX, graphs that do not fit...
            raise ModelUnavailable(f"neural model in {model_dir} unusable: {type(exc).__name__}: {exc}") from exc

    def _load(self, model_dir: Path) -> None:
        import onnxruntime as ort

        info = json.loads((model_dir / "model.json").read_text())
        version = info.get("format_version") if isinstance(info, dict) else contract.FORMAT_VERSION
        if version != contract.FORMAT_VERSION:
            raise ModelUnavailable(f"neural model in {model_dir} has format {version}, this runtime reads format "
                                   f"{contract.FORMAT_VERSION} (re-export it with plc export)")
        check_model_description(info)
        graphs = read_graphs(model_dir, info)
        self.features = FeatureConfig(**info["features"])
        self.config = info["model"]
        self.start_history_samples = int(info["start_history_samples"])
        #: The most past audio (samples) the model reads at once.
        self.audio_needed = audio_needed(info)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3

        def session(name: str):
            return ort.InferenceSession(graphs[name], opts, providers=["CPUExecutionProvider"])

        self.start = session(contract.START.file)
        self.cond = session(contract.COND.file)
        self.generate = session(contract.GENERATE.file)
        self.info = info
        c = self.config
        self.subframe = int(c["subframe"])
        self.steps = int(c["frame_samples"]) // self.subframe
        self.lag_context = int(c["lag_context"])
        self.lag_window = self.subframe + 2 * self.lag_context
        self.lag_reach = self.subframe + self.lag_context
        self.history_samples = int(c["history_samples"])
        self.cond_hidden = int(c["cond_hidden"])
        self.cond_dim = int(c["cond_dim"])
        self.ar_hidden = int(c["ar_hidden"])
        data = info.get("data") or {}
        self.context_frames = int(data.get("context_frames", contract.CONTEXT_FRAMES))
        self.warmup_frames = int(data.get("warmup_frames", contract.WARMUP_FRAMES))
        self._prewarm()

    def _prewarm(self) -> None:
        """Run each graph once: onnxruntime's first call is slow (lazy allocation), calls must not be."""
        n_mels, sub = self.features.n_mels, self.subframe
        one = np.ones((1, 1), np.float32)
        try:
            self.cond.run(None, contract.COND.feed(np.zeros((1, 1, n_mels), np.float32), np.ones((1, 1), np.float32),
                                                   np.zeros((1, 1, self.cond_hidden), np.float32)))
            self.start.run(None, contract.START.feed(
                np.zeros((1, self.context_frames, n_mels), np.float32), np.zeros((1, self.context_frames), np.float32),
                np.zeros((1, self.start_history_samples), np.float32), np.array([100], np.int64), one * 0.5,
                one * 0.1, np.zeros(((self.warmup_frames + 1) * self.steps, sub), np.float32)))
            self.generate.run(None, contract.GENERATE.feed(
                np.zeros((1, 1, self.ar_hidden), np.float32), np.zeros((1, self.history_samples), np.float32),
                np.array([100], np.int64), np.zeros((1, self.cond_dim), np.float32), one * 0.5, one * 0.1,
                np.zeros((self.steps, sub), np.float32)))
        except Exception as exc:
            raise ModelUnavailable(f"neural model does not run: {type(exc).__name__}: {exc}") from exc


class NeuralConcealer(Concealer):
    """WaveRNN-style concealment (see the module docstring).

    Parameters
    ----------
    model_dir : path, optional
        Folder with ``model.json`` and the ONNX graphs (default: ``$PLC_NEURAL_MODEL``, else the
        shipped model).
    fade_start_ms, fade_end_ms : float
        Continuous-loss time where the fade-out starts and where the output is silent, when the
        audio before the loss is voiced (pitch correlation at least ``voiced_threshold``).
    unvoiced_fade_start_ms, unvoiced_fade_end_ms : float
        The same for unvoiced audio (noise, fricatives, silence). Tuned on training clips for
        the default ``unvoiced="noise"`` (see MODEL.md); with ``unvoiced="model"`` a quicker fade
        (0 to 60 ms) is better, as the model's made-up hiss sounds wrong when it goes on.
    unvoiced : {"noise", "model"}
        What continues a loss after unvoiced audio: LPC-shaped noise from the recent residual
        (:class:`~.noise_continuation.NoiseContinuation`, as SILK conceals unvoiced frames), or
        the network. ``stats.noise_concealed_frames`` counts the frames the noise made.
    max_align_lag, merge_samples : int
        When packets resume, the continuation is searched over lags 0..``max_align_lag`` samples
        for the best match with the received frame's first ``merge_samples``, over which it is
        cross-faded into the real audio (2.5 ms by default: a short merge reaches the real audio
        sooner, +0.05 PLCMOS and +0.07 PESQ under isolated losses against 7 ms; MODEL.md).
    noise_scale : float
        Scale of the generator's standard-normal noise input (a sampling temperature, as in
        LPCNet): 1 is what it was trained with, 0 the deterministic continuation. The shipped
        v3 weights barely use their noise (MODEL.md), so it is a knob for researchers' models.
    defer_to_codec : collection of str
        Where the codec's own concealment is fed (module docstring), the codec modes in which it
        plays the loss instead of the model (a concealment fed with no mode counts as one of
        them). ``()``: the model conceals whatever the codec. ``stats.codec_concealed_frames`` counts
        the lost frames that played the codec's concealment.
    comfort_noise : bool
        Fill in the call's background noise (:class:`~.noise_continuation.ComfortNoise`,
        estimated on received audio) as the model's continuation fades out, so a long loss goes
        on as that noise instead of digital silence.
    steer_codec : bool
        Where the codec can be steered (Opus in SILK or hybrid mode, :mod:`plc.codecs.opus_steering`) and
        a loss follows voiced audio, propose the model's first packet of it to the codec
        (:meth:`propose_continuation`), which codes it into its state and plays it; the codec's
        PLC continues from there. ``stats.steered_losses`` counts those losses (and
        ``stats.losses_left_to_fec`` those the decoder was not steered in, as the stream carries
        in-band FEC).
    end_gaps_ahead : bool
        Where the packet after a burst is already at hand (a jitter buffer) and the codec's
        concealment plays the burst, cross-fade its last 20 ms into that packet's audio
        (:mod:`.gap_end`, from a loss's second packet on); ``stats.gaps_ended_ahead`` counts them.
    """

    name = "neural"
    uses_codec_concealment = True

    def __init__(self, sample_rate: int = 16000, frame_ms: int = 10, model_dir: Optional[str | Path] = None,
                 fade_start_ms: float = contract.VOICED_FADE_MS[0],
                 fade_end_ms: float = contract.VOICED_FADE_MS[1],
                 unvoiced_fade_start_ms: float = contract.UNVOICED_FADE_MS[0],
                 unvoiced_fade_end_ms: float = contract.UNVOICED_FADE_MS[1],
                 voiced_threshold: float = DEFAULT_VOICED_THRESHOLD, unvoiced: str = "noise",
                 max_align_lag: int = DEFAULT_MAX_ALIGN_LAG, merge_samples: int = DEFAULT_MERGE_SAMPLES, seed: int = 0,
                 noise_scale: float = DEFAULT_NOISE_SCALE, defer_to_codec: Collection[str] = DEFAULT_DEFER_TO_CODEC,
                 comfort_noise: bool = DEFAULT_COMFORT_NOISE, steer_codec: bool = DEFAULT_STEER_CODEC,
                 end_gaps_ahead: bool = DEFAULT_END_GAPS_AHEAD) -> None:
        if sample_rate != 16000 or frame_ms != 10:
            raise ValueError("the neural concealer runs at 16000 Hz with 10 ms frames")
        if isinstance(defer_to_codec, str) or not all(isinstance(m, str) for m in defer_to_codec):
            raise ValueError(f"defer_to_codec must be a collection of codec mode names, got {defer_to_codec!r}")
        self.defer_to_codec = frozenset(defer_to_codec)
        self.steer_codec = bool(steer_codec)
        self.ends_gaps_ahead = bool(end_gaps_ahead)
        self.comfort_noise = bool(comfort_noise)
        self._comfort = ComfortNoise(sample_rate * frame_ms // 1000) if self.comfort_noise else None
        check_fades((fade_start_ms, fade_end_ms), (unvoiced_fade_start_ms, unvoiced_fade_end_ms))
        if unvoiced not in UNVOICED_CHOICES:
            raise ValueError(f"unvoiced must be one of {UNVOICED_CHOICES}, got {unvoiced!r}")
        self.unvoiced = unvoiced
        self.fade_start_ms, self.fade_end_ms = fade_start_ms, fade_end_ms
        self.unvoiced_fade_start_ms, self.unvoiced_fade_end_ms = unvoiced_fade_start_ms, unvoiced_fade_end_ms
        self.voiced_threshold = voiced_threshold
        self.max_align_lag = max_align_lag
        self.merge_samples = merge_samples
        check_merge(max_align_lag, merge_samples, sample_rate * frame_ms // 1000)
        self.seed = seed
        check_noise_scale(noise_scale)
        self.noise_scale = noise_scale
        self._fade_gains: dict[tuple[tuple[float, float], int], np.ndarray] = {}
        self.load_error: Optional[str] = None
        try:
            self.model: Optional[NeuralModel] = NeuralModel(Path(model_dir) if model_dir else default_model_dir())
        except ModelUnavailable as exc:
            self.model, self.load_error = None, str(exc)
        context_frames = self.model.context_frames if self.model else contract.CONTEXT_FRAMES
        needed_ms = -(-self.model.audio_needed * 1000 // sample_rate) if self.model else 0
        super().__init__(sample_rate, frame_ms, history_ms=max(200, (context_frames + 2) * frame_ms, needed_ms))
        self._prewarm_loss_path()

    def _prewarm_loss_path(self) -> None:
        """Conceal one loss in a synthetic vowel now: a self-test, and so the first real loss of a
        call is not slow.

        The first start of a loss otherwise pays for building the mel filterbank
        and for onnxruntime's allocations at the real input shapes (~350 ms):
        in a live call that would block the audio thread. A model that raises, or makes a frame
        that fails the frame check (:meth:`_frame_problem`: NaN weights, weights scaled out of
        range), or that continues the steady vowel almost silently (zeroed weights), is refused
        here with the reason (:attr:`unavailable_reason`), and the classic concealer takes every loss.
        """
        if self.model is None:
            return
        stats, threshold = self.stats, self.voiced_threshold
        self.stats, self.voiced_threshold = ConcealerStats(), -np.inf  # the model path
        try:
            vowel = _self_test_vowel(self.history_samples + self.frame_samples, self.sample_rate)
            frames = vowel.reshape(-1, self.frame_samples)
            for f in frames[:-1]:
                self.process(f)
            first = self.process(None)
            self.process(None)  # the one-step conditioning path too
            self.process(frames[-1])  # and the merge back
            NoiseContinuation(np.zeros(self.frame_samples, np.float32), self._rng).next_frame()
            level_db = 10.0 * np.log10((np.mean(np.square(first, dtype=np.float64)) + 1e-20)
                                       / np.mean(np.square(vowel, dtype=np.float64)))
            if level_db < SELF_TEST_MIN_LEVEL_DB:
                self.model, self.load_error = None, (
                    f"neural model fails its self-test: it continues a steady vowel {min(-level_db, 120):.0f} dB "
                    f"below its level (at most {-SELF_TEST_MIN_LEVEL_DB:.0f} dB below)")
        except ConcealmentError as exc:  # a frame it must not play, or the model raised
            self.model, self.load_error = None, f"neural model fails its self-test: {exc}"
        except Exception as exc:  # the model loads but cannot run on real shapes
            self.model, self.load_error = None, f"neural model does not run: {type(exc).__name__}: {exc}"
        self.stats, self.voiced_threshold = stats, threshold
        self.reset()

    @property
    def unavailable_reason(self) -> Optional[str]:
        """Why the model cannot conceal (:attr:`load_error`: it did not load or failed its self-test), or None."""
        return self.load_error

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        super().reset()
        n_frames = self.history_samples // self.frame_samples
        self._lost_history = np.zeros(n_frames, dtype=bool)  # which history frames were concealed
        # Log-mel of every played frame, kept as frames are played (a few µs each) so that the
        # start of a loss does not compute them all at once; the same numbers either way.
        self._mel_history: Optional[np.ndarray] = None
        if self.model is not None:
            silent = log_mel_frames(np.zeros(self.frame_samples, np.float32), self.model.features)
            self._mel_history = np.repeat(silent, n_frames, axis=0)
        self._cond_h: Optional[np.ndarray] = None
        self._rng = np.random.default_rng(self.seed)
        self._comfort_rng = np.random.default_rng(self.seed + 1)  # its own: the model's noise stays as it was
        if self._comfort is not None:
            self._comfort.reset()
        self._codec_plays = False  # this loss plays the codec's concealment (set at its start)
        self._h: Optional[np.ndarray] = None
        self._cond: Optional[np.ndarray] = None
        self._signal: Optional[np.ndarray] = None   # what the generator has made so far, unfaded
        self._noise: Optional[NoiseContinuation] = None  # this loss's noise, after unvoiced audio
        self._loss_started = False  # a loss has been started by the model or the noise
        self._lag = np.array([100], np.int64)
        self._voicing = np.zeros((1, 1), np.float32)
        self._level = np.ones((1, 1), np.float32)
        self._fade = (self.fade_start_ms, self.fade_end_ms)   # this loss's fade (set at its start)
        self._energy_limit = 0.0  # most energy a frame of this loss may have (set at its start)

    # --------------------------------------------------------------- received
    def _on_received(self, frame: np.ndarray) -> None:
        if self._comfort is not None:  # the estimate follows plainly received audio
            keep = ComfortNoise.ANALYSIS_SAMPLES - len(frame)
            self._comfort.update(np.concatenate([self.history[len(self.history) - keep:], frame]))

    def _after_frame(self, out: np.ndarray, lost: bool) -> None:
        if not lost:
            self._codec_plays = False  # set again by the next loss's start
        self._lost_history[:-1] = self._lost_history[1:]
        self._lost_history[-1] = lost
        if self._mel_history is not None:
            newest = log_mel_last_frame(self.history, self.model.features)
            self._mel_history = np.concatenate([self._mel_history[1:], newest])

    def _resume(self, frame: np.ndarray) -> np.ndarray:
        if self._codec_plays:
            return self._codec_resume(frame)
        if self.model is None or not self._loss_started:
            return frame
        lost_ms = self.lost_frames * self.frame_ms
        if lost_ms >= self._fade[1]:  # ours is silent (under the comfort noise): fade the real audio in
            n = min(self.frame_samples, 80)
            w = raised_cosine_fade(n)
            out = frame.copy()
            out[:n] = self._with_comfort_noise(np.zeros(self.frame_samples, np.float32))[:n] * (1 - w) + out[:n] * w
            return out
        try:
            extra = self._generate_frame(self.lost_frames)
        except Exception as exc:
            raise self._model_raised(exc) from exc
        self._check_frame(extra)
        return align_and_crossfade(self._with_comfort_noise(extra), frame, self.max_align_lag, self.merge_samples)

    # -------------------------------------------------------------- concealing
    @property
    def plays_codec_concealment(self) -> bool:
        if self.lost_frames > 0:
            return self._codec_plays
        return len(self._codec_queue) >= self.frame_samples and self._defers(self.codec_mode)

    def _defers(self, mode: Optional[str]) -> bool:
        """Whether a loss with the codec's concealment fed in coding mode ``mode`` plays it."""
        return mode is None or mode in self.defer_to_codec

    def _conceal(self) -> np.ndarray:
        if self.lost_frames == 0:
            self._codec_plays = self.codec_concealment is not None and self._defers(self.codec_mode)
        if self._codec_plays:
            if self.codec_concealment is None:
                raise ConcealmentError("the codec's concealment stopped in the middle of a loss")
            self.stats.codec_concealed_frames += 1
            return self.codec_concealment
        if self.model is None:
            raise ConcealmentError(self.load_error)
        if self.lost_frames == 0:
            self._energy_limit = self._frame_energy_limit()
        try:
            out = self._start_loss() if self.lost_frames == 0 else self._generate_frame(self.lost_frames)
        except Exception as exc:
            raise self._model_raised(exc) from exc
        self._check_frame(out)
        self.stats.noise_concealed_frames += self._noise is not None
        return self._with_comfort_noise(out)

    def propose_continuation(self, n_samples: int, mode: Optional[str]) -> Optional[np.ndarray]:
        """The model's continuation of voiced audio for a steerable codec whose concealment this
        loss will play (``mode`` one of ``defer_to_codec``), with ``steer_codec``: the first
        ``n_samples`` of the loss, unfaded (the codec's PLC continues from it after that packet).
        None after unvoiced audio (the codec's noise-like PLC is as good there: MODEL.md), before
        any audio, mid-loss or without a model."""
        if (not self.steer_codec or self.model is None or self.lost_frames > 0 or self.frames_seen == 0
                or not self._defers(mode) or n_samples <= 0):
            return None
        self._energy_limit = self._frame_energy_limit()
        try:
            frames = [self._start_loss()]
            if self._noise is not None:
                self._noise = None
                return None
            while len(frames) * self.frame_samples < n_samples:
                frames.append(self._generate_frame(len(frames)))
        except Exception as exc:
            raise self._model_raised(exc) from exc
        for frame in frames:
            self._check_frame(frame)
        return np.concatenate(frames)[:n_samples]

    def _with_comfort_noise(self, out: np.ndarray) -> np.ndarray:
        """``out`` (our faded continuation of the current lost frame, or the extra frame that
        merges back) with the background noise filling in what the fade took away (unchanged
        without ``comfort_noise``). A frame of noise is made per call, so it runs on through the loss."""
        if self._comfort is None or not self._comfort.available:
            return out
        if self.lost_frames == 0:
            self._comfort.start()
        fill = 1.0 - self._gain(self.lost_frames)
        if not fill.any():
            return out
        return (out + fill * self._comfort.next_frame(self._comfort_rng)).astype(np.float32)

    def _frame_energy_limit(self) -> float:
        """The most energy (sum of squares) a concealed frame of this loss may have:
        :data:`MAX_LEVEL_RATIO` times the loudest 10 ms of the last :data:`LEVEL_REFERENCE_MS`
        before the loss (at least :data:`LEVEL_FLOOR_RMS`)."""
        n = self.frame_samples
        recent = self.history[-(LEVEL_REFERENCE_MS * self.sample_rate // 1000) // n * n:].reshape(-1, n)
        loudest = float(np.einsum("ij,ij->i", recent, recent).max()) / n
        return (MAX_LEVEL_RATIO ** 2) * max(loudest, LEVEL_FLOOR_RMS ** 2) * n

    def _frame_problem(self, frame: np.ndarray) -> Optional[str]:
        """Why a frame the model (or the noise continuation) made must not be played, or None.

        A few µs: the frame must be finite and no louder than :meth:`_frame_energy_limit`. A
        corrupt model (NaN or inf weights, weights scaled out of range) fails this where it
        would otherwise play silence or a loud tone.
        """
        energy = float(np.dot(frame, frame))
        if energy <= self._energy_limit:
            return None
        if not np.all(np.isfinite(frame)):
            return "the model made a non-finite frame (NaN or inf)"
        over_db = 10.0 * np.log10(energy / self._energy_limit) + 20.0 * np.log10(MAX_LEVEL_RATIO)
        return (f"the model made a frame {over_db:.0f} dB louder than the audio before the loss "
                f"(at most {20.0 * np.log10(MAX_LEVEL_RATIO):.0f} dB)")

    def _check_frame(self, frame: np.ndarray) -> None:
        """Raise :class:`ConcealmentError` if the frame must not be played (:meth:`_frame_problem`)."""
        problem = self._frame_problem(frame)
        if problem is not None:
            raise ConcealmentError(problem)

    @staticmethod
    def _model_raised(exc: Exception) -> ConcealmentError:
        """The error to raise when running the model raised ``exc``."""
        return ConcealmentError(f"the model raised {type(exc).__name__}: {exc}")

    def _gain(self, lost_frames_before: int) -> np.ndarray:
        """The fade-out over lost frame ``lost_frames_before`` of this loss (raised cosine over ``self._fade``)."""
        key = (self._fade, lost_frames_before)
        gains = self._fade_gains.get(key)
        if gains is None:
            t_ms = (lost_frames_before * self.frame_samples + np.arange(self.frame_samples)) * 1000.0 / self.sample_rate
            gains = self._fade_gains[key] = fade_gains(t_ms, self._fade).astype(np.float32)
        return gains

    def _start_loss(self) -> np.ndarray:
        """The first lost frame: pitch, voicing and level of the last real audio, then one
        ``start.onnx`` call (conditioning over the context, warm-up, the frame itself), or the
        noise continuation after unvoiced audio."""
        m = self.model
        assert m is not None and self._mel_history is not None
        fc, ctx = m.features, m.context_frames
        history = self.history
        lag, voicing = pitch_lag(history, fc)
        voiced = voicing >= self.voiced_threshold
        self._fade = ((self.fade_start_ms, self.fade_end_ms) if voiced
                      else (self.unvoiced_fade_start_ms, self.unvoiced_fade_end_ms))
        self._loss_started = True
        if not voiced and self.unvoiced == "noise":
            self._noise = NoiseContinuation(history, self._rng, self.frame_samples, self.sample_rate)
            return self._noise.next_frame() * self._gain(0)
        self._noise = None
        self._lag = np.array([effective_lag(lag, m.lag_reach)], np.int64)
        self._voicing = np.full((1, 1), voicing, np.float32)
        self._level = np.full((1, 1), frame_gain(history, fc), np.float32)
        n_noise = (m.warmup_frames + 1) * m.steps
        frame, self._h, cond, self._cond_h = m.start.run(None, contract.START.feed(
            self._mel_history[None, -ctx:], self._lost_history[None, -ctx:].astype(np.float32),
            history[None, -m.start_history_samples:], self._lag, self._voicing, self._level,
            self._noise_input(n_noise)))
        self._cond = cond[0]                      # (1, C): the first lost frame's; later ones are stepped on
        self._signal = np.concatenate([history[len(history) - m.history_samples + self.frame_samples:], frame[0]])[None]
        return frame[0] * self._gain(0)

    def _noise_input(self, steps: int) -> np.ndarray:
        """The generator's noise for ``steps`` sub-frames, at ``noise_scale``."""
        assert self.model is not None
        noise = self._rng.standard_normal((steps, self.model.subframe), dtype=np.float32)
        return noise if self.noise_scale == 1.0 else noise * np.float32(self.noise_scale)

    def _generate_frame(self, lost_frames_before: int) -> np.ndarray:
        if lost_frames_before * self.frame_ms >= self._fade[1]:
            return np.zeros(self.frame_samples, np.float32)
        if self._noise is not None:
            return self._noise.next_frame() * self._gain(lost_frames_before)
        m = self.model
        assert m is not None and self._cond is not None and self._signal is not None
        k = lost_frames_before  # before the fade's end: later frames are silent (above)
        while len(self._cond) <= k:  # one conditioning step per lost frame, run when it is needed
            step, self._cond_h = m.cond.run(None, contract.COND.feed(
                np.zeros((1, 1, m.features.n_mels), np.float32), np.ones((1, 1), np.float32), self._cond_h))
            self._cond = np.concatenate([self._cond, step[0]])
        frame, h = m.generate.run(None, contract.GENERATE.feed(
            self._h, self._signal, self._lag, self._cond[k:k + 1], self._voicing, self._level,
            self._noise_input(m.steps)))
        self._h = h
        self._signal = np.concatenate([self._signal[:, self.frame_samples:], frame], axis=1)
        return frame[0] * self._gain(lost_frames_before)
