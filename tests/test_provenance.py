"""Run provenance: the commit (or $ERRPROP_COMMIT outside a checkout), the CPU, a GPU only if used."""

import torch

from errprop import provenance


def test_errprop_commit_names_the_code_outside_a_checkout(monkeypatch):
    monkeypatch.setenv("ERRPROP_COMMIT", "abc1234")
    assert provenance.commit() == "abc1234"
    monkeypatch.delenv("ERRPROP_COMMIT")
    assert provenance.commit() != "abc1234"


def test_machine_line_names_cpu_threads_and_no_unused_gpu():
    p = provenance.provenance()
    assert set(p["cpu_flags"]) <= set(provenance.VECTOR_FLAGS)
    assert p["cpu"] in p["machine"] and f"{torch.get_num_threads()} threads" in p["machine"]
    if not torch.cuda.is_initialized():  # this process used no GPU: none is named
        assert p["gpu"] is None and "GPU" not in p["machine"]
    assert p["python"].count(".") == 2
