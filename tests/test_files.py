"""Result caches of the experiments: a hit only under the same key, anything unreadable a miss."""

from __future__ import annotations

import json

from errprop.files import cached, read_cached


def test_cached_computes_once_per_key(tmp_path):
    path, calls = tmp_path / "r.json", []

    def compute():
        calls.append(1)
        return {"fd": 3.5}

    key = {"n": 100, "steps": (5, 10)}  # a tuple compares equal to the JSON list it becomes
    assert cached(path, key, compute) == {"fd": 3.5}
    assert cached(path, {"n": 100, "steps": [5, 10]}, compute) == {"fd": 3.5}
    assert len(calls) == 1
    assert cached(path, {"n": 200, "steps": [5, 10]}, compute) == {"fd": 3.5}  # a new key recomputes
    assert len(calls) == 2
    assert json.loads(path.read_text())["key"]["n"] == 200


def test_unreadable_or_foreign_cache_is_a_miss(tmp_path):
    path = tmp_path / "r.json"
    assert read_cached(path, {"a": 1}) is None  # missing
    path.write_text('{"key": {"a": 1}, "result": ')  # cut by a crash
    assert read_cached(path, {"a": 1}) is None
    path.write_text("[1, 2]")  # not ours
    assert read_cached(path, {"a": 1}) is None
    assert cached(path, {"a": 1}, lambda: 7) == 7
    assert read_cached(path, {"a": 1}) == 7
