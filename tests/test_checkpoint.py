import json

import pytest
import torch

from errprop import checkpoint
from errprop.errors import ErrpropError


def _save(run, step, keep=3):
    return checkpoint.save(run, step, {"model.w": torch.full((3,), float(step))}, {"config": {}}, keep)


def test_roundtrip_and_keep_last(tmp_path):
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    names = [p.name for p in checkpoint.list_checkpoints(tmp_path)]
    assert names == ["step-00000003.json", "step-00000004.json"]
    assert not (tmp_path / "checkpoints" / "step-00000001.safetensors").exists()
    tensors, meta = checkpoint.load(tmp_path)
    assert meta["step"] == 4 and torch.equal(tensors["model.w"], torch.full((3,), 4.0))


def test_corrupted_truncated_and_foreign(tmp_path):
    js = _save(tmp_path, 5)
    st = js.with_suffix(".safetensors")
    data = st.read_bytes()
    st.write_bytes(data[: len(data) // 2])
    with pytest.raises(ErrpropError, match="corrupted or truncated"):
        checkpoint.load(tmp_path)
    st.write_bytes(data)
    meta = json.loads(js.read_text())
    js.write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ErrpropError, match="format 99"):
        checkpoint.load(js)
    js.write_text("{not json")
    with pytest.raises(ErrpropError, match="not valid JSON"):
        checkpoint.load(js)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ErrpropError, match="no checkpoint in"):
        checkpoint.load(tmp_path / "empty")
    with pytest.raises(ErrpropError, match="no run folder or checkpoint"):
        checkpoint.load(tmp_path / "missing")


def test_failed_write_keeps_previous(tmp_path, monkeypatch):
    _save(tmp_path, 1)

    def boom(tensors, path):
        open(path, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(OSError):
        _save(tmp_path, 2)
    tensors, meta = checkpoint.load(tmp_path)
    assert meta["step"] == 1
    assert not list((tmp_path / "checkpoints").glob(".*tmp"))


def test_state_mismatch_is_clear():
    with pytest.raises(ErrpropError, match="does not fit the model"):
        checkpoint.load_state(torch.nn.Linear(2, 2), {"weight": torch.zeros(3, 3)}, "model weights")
