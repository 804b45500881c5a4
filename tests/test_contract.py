"""The training <-> runtime contract (plc/neural/contract.py): one definition both sides use."""

from __future__ import annotations

import json

import numpy as np

from plc.concealers.neural import DEFAULT_MODEL_DIR, NeuralConcealer
from plc.neural import contract


def test_the_shipped_model_is_what_the_contract_says():
    import onnxruntime as ort

    info = json.loads((DEFAULT_MODEL_DIR / "model.json").read_text())
    assert info["format_version"] == contract.FORMAT_VERSION and info["files"] == list(contract.GRAPH_FILES)
    assert info["data"]["context_frames"] == contract.CONTEXT_FRAMES
    assert info["data"]["warmup_frames"] == contract.WARMUP_FRAMES
    for graph in (contract.START, contract.COND, contract.GENERATE):
        session = ort.InferenceSession(str(DEFAULT_MODEL_DIR / graph.file), providers=["CPUExecutionProvider"])
        assert tuple(i.name for i in session.get_inputs()) == graph.inputs, graph.file
        assert tuple(o.name for o in session.get_outputs()) == graph.outputs, graph.file


def test_runtime_defaults_come_from_the_contract():
    c = NeuralConcealer()
    assert (c.fade_start_ms, c.fade_end_ms) == contract.VOICED_FADE_MS
    assert (c.unvoiced_fade_start_ms, c.unvoiced_fade_end_ms) == contract.UNVOICED_FADE_MS
    assert c.model.context_frames == contract.CONTEXT_FRAMES
    gains = contract.fade_gains(np.array([0.0, 60.0, 120.0]), contract.VOICED_FADE_MS)
    assert gains.tolist() == [1.0, 1.0, 0.0]


def test_training_defaults_come_from_the_contract():
    import pytest

    pytest.importorskip("torch")
    from training.data import DataConfig
    from training.train import LossConfig

    d = DataConfig()
    assert (d.context_frames, d.warmup_frames, d.max_lost_frames) == (
        contract.CONTEXT_FRAMES, contract.WARMUP_FRAMES, contract.MAX_LOST_FRAMES)
    assert LossConfig().fade_ms == contract.TRAINING_FADE_MS
