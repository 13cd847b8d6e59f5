"""The kernel cache keeps the builds that can still be loaded and prunes the rest."""

import hashlib
import json
import os
import time

from errprop.nets.kernels import prune


def test_prune_deletes_builds_of_changed_or_vanished_sources(tmp_path):
    src = tmp_path / "group_norm_cpu.cpp"
    src.write_text("int x;")
    sha = hashlib.sha256(src.read_bytes()).hexdigest()
    kernels = tmp_path / "kernels"

    def build(name, record=None, age_days=0.0):
        d = kernels / f"errprop_group_norm_{name}"
        d.mkdir(parents=True)
        if record is not None:
            (d / "source.json").write_text(json.dumps(record))
        old = time.time() - age_days * 86400
        os.utime(d, (old, old))
        return d

    current = build("current", {"source": str(src), "sha256": sha})
    other_checkout = build("same", {"source": str(src), "sha256": sha})
    changed = build("changed", {"source": str(src), "sha256": "0" * 64})
    vanished = build("vanished", {"source": str(tmp_path / "gone.cpp"), "sha256": sha})
    old = build("old", age_days=40)
    recent = build("recent", age_days=1)
    gone = prune(kernels, keep=current)
    assert sorted(gone) == sorted([changed, vanished, old])
    assert all(d.is_dir() for d in (current, other_checkout, recent))
    assert not any(d.exists() for d in gone)
