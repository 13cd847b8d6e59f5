import json

import pytest
import torch

from errprop import checkpoint, files
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


def test_an_interruptions_checkpoint_is_not_counted_and_goes_once_superseded(tmp_path):
    """keep_last 3: the transient checkpoint of step 7 (an interruption) is kept until step 8 is
    saved, then removed, and never pushes out step 2 — a budget a study may still measure."""
    def save(step):
        return checkpoint.save(tmp_path, step, {"model.w": torch.zeros(1)}, {"config": {}}, 3,
                               transient=step % 2 == 1)

    def steps():
        return [checkpoint._step_of(p) for p in checkpoint.list_checkpoints(tmp_path)]

    for step in (2, 4, 6, 7):
        save(step)
    assert steps() == [2, 4, 6, 7]  # the resume point is the latest, and 2 is still there
    save(8)
    assert steps() == [4, 6, 8]  # 7 superseded; keep_last counts the grid as before
    assert not list((tmp_path / "checkpoints").glob("step-00000007.*"))
    assert not list((tmp_path / "checkpoints").glob("step-00000002.*"))


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
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", boom)
    with pytest.raises(ErrpropError, match=r"could not write the checkpoint of step 2.*No space.*step-0+1"):
        _save(tmp_path, 2)
    tensors, meta = checkpoint.load(tmp_path)
    assert meta["step"] == 1
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "step-00000001.json", "step-00000001.safetensors"]


def test_failed_commit_marker_keeps_previous_and_debris_is_cleared(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    real = checkpoint.atomic_write

    def fail_on_json(path, write):
        if path.suffix == ".json":
            write(path.with_name(f".{path.name}.tmp"))  # a half-done temporary, then the crash
            raise OSError(5, "Input/output error")
        real(path, write)

    monkeypatch.setattr(checkpoint, "atomic_write", fail_on_json)
    with pytest.raises(ErrpropError, match="could not write the checkpoint of step 2"):
        _save(tmp_path, 2)
    d = tmp_path / "checkpoints"
    assert (d / "step-00000002.safetensors").exists()  # tensors without their commit marker ...
    assert checkpoint.load(tmp_path)[1]["step"] == 1  # ... are not a checkpoint
    monkeypatch.undo()
    _save(tmp_path, 3)
    assert sorted(p.name for p in d.iterdir()) == [
        "step-00000001.json", "step-00000001.safetensors", "step-00000003.json", "step-00000003.safetensors"]


def test_writes_are_synced_to_disk(tmp_path, monkeypatch):
    import os
    import stat

    synced = []
    real = os.fsync

    def spy(fd):
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real(fd)

    monkeypatch.setattr(files.os, "fsync", spy)
    _save(tmp_path, 1)
    assert synced.count("file") == 2 and "dir" in synced  # both files, then the renames


def test_steps_sort_numerically_and_incomplete_meta(tmp_path):
    for step in (99_999_999, 100_000_000):
        _save(tmp_path, step)
    assert checkpoint.load(tmp_path)[1]["step"] == 100_000_000
    js = checkpoint.resolve(tmp_path)
    meta = json.loads(js.read_text())
    for key, bad in (("sha256", None), ("tensors", "../../etc/passwd"), ("step", "7")):
        js.write_text(json.dumps({**meta, key: bad}))
        with pytest.raises(ErrpropError, match="corrupted"):
            checkpoint.load(js)


def test_optimizer_state_mismatch_is_clear():
    opt = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ErrpropError, match="optimizer state does not fit"):
        checkpoint.load_optimizer(opt, {"optim.x.exp_avg": torch.zeros(2)}, {"param_groups": []})
    with pytest.raises(ErrpropError, match="optimizer state does not fit"):
        checkpoint.load_optimizer(opt, {}, None)


def test_state_mismatch_is_clear():
    with pytest.raises(ErrpropError, match="does not fit the model"):
        checkpoint.load_state(torch.nn.Linear(2, 2), {"weight": torch.zeros(3, 3)}, "model weights")


def test_a_safetensors_error_is_a_clear_error_and_keeps_the_previous(tmp_path, monkeypatch):
    from safetensors import SafetensorError

    _save(tmp_path, 1)

    def full(tensors, path):
        raise SafetensorError("Error while serializing: IoError(No space left on device)")

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(ErrpropError, match="could not write the checkpoint of step 2.*No space left"):
        _save(tmp_path, 2)
    assert checkpoint.load(tmp_path)[1]["step"] == 1
