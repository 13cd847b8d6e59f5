import pytest

from errprop import config
from errprop.errors import ErrpropError


def test_defaults_and_overrides_roundtrip(tmp_path):
    cfg = config.load(overrides=["train.steps=10", "loss.sa.K=3", "model.channel_mult=[1, 2]",
                                 "train.lr=3e-4", "data.root=/x"])
    assert (cfg.train.steps, cfg.loss.sa.K, cfg.model.channel_mult) == (10, 3, [1, 2])
    assert cfg.train.lr == 3e-4 and isinstance(cfg.train.lr, float)
    path = tmp_path / "c.yaml"
    path.write_text(config.dump(cfg))
    assert config.load(path) == cfg


def test_same_compares_stored_configs_as_validated_configs():
    cfg = config.load(overrides=["train.steps=10"])
    stored = cfg.to_dict()
    del stored["train"]["threads"]  # saved before the field existed: takes its default
    assert config.same(stored, cfg)
    assert not config.same({**stored, "train": {**stored["train"], "steps": 11}}, cfg)
    assert not config.same({"train": {"bogus": 1}}, cfg)
    assert not config.same(None, config.load(overrides=["train.steps=10", "train.lr=1"]))
    assert not config.same("not a mapping", cfg)


def test_int_accepted_for_float_field():
    assert config.load(overrides=["train.lr=1"]).train.lr == 1.0


@pytest.mark.parametrize("override,message", [
    ("train.steps=0", "train.steps must be ≥ 1, got 0"),
    ("train.bogus=1", "unknown field 'train.bogus'"),
    ("bogus.x=1", "unknown field 'bogus'"),
    ("loss.sa.tau=x", "loss.sa.tau must be one of"),
    ("train.lr=abc", "train.lr must be of type float"),
    ("train.steps=1.5", "train.steps must be of type int"),
    ("train.steps=true", "train.steps must be of type int"),
    ("train.lr=.nan", "train.lr must be a finite number"),
    ("train.lr=-1", "train.lr must be > 0"),
    ("model.channel_mult=3", "model.channel_mult must be a list"),
    ("model.channel_mult=[1, x]", r"model.channel_mult\[1\] must be of type int"),
    ("process.beta_end=0.5", None),
    ("process.beta_start=0.5", "beta_start < process.beta_end"),
    ("train.ema_decay=1.0", "ema_decay must be < 1"),
    ("sample.grid=list", "sample.sigmas must list"),
    ("data=5", "data must be a mapping"),
])
def test_validation_names_the_field(override, message):
    if message is None:
        config.load(overrides=[override])
        return
    with pytest.raises(ErrpropError, match=message):
        config.load(overrides=[override])


def test_bad_files(tmp_path):
    with pytest.raises(ErrpropError, match="not found"):
        config.load(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ErrpropError, match="not valid YAML"):
        config.load(bad)
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ErrpropError, match="mapping of sections"):
        config.load(bad)
    with pytest.raises(ErrpropError, match="key=value"):
        config.load(overrides=["train.steps"])


def test_shipped_configs_load():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        config.load(path)


def test_choices_are_read_from_the_registries():
    """One home per list: the schema's choices are the domain modules' own tuples."""
    import dataclasses

    from errprop import denoisers, grids, process, samplers
    from errprop.data import gmm, images
    from errprop.losses import NAMES as LOSSES
    from errprop.losses import cumulative, sequence_aware, simple
    from errprop.metrics.mmd import MULTIPLIERS
    from errprop.nets import NETS

    def choices(cls, name):
        return next(f for f in dataclasses.fields(cls) if f.name == name).metadata["choices"]

    assert choices(config.DataConfig, "name") == gmm.PRESETS + images.NAMES
    assert choices(config.ProcessConfig, "kind") is process.KINDS
    assert choices(config.ProcessConfig, "schedule") is process.BETA_SCHEDULES
    assert choices(config.ProcessConfig, "beta_scale") is process.BETA_SCALES
    assert choices(config.ProcessConfig, "ve_sigma") is process.VE_KINDS
    assert choices(config.ModelConfig, "net") is NETS
    assert choices(config.ModelConfig, "parameterization") is denoisers.PARAMETERIZATIONS
    for name, allowed in sequence_aware.CHOICES.items():
        assert choices(config.SAConfig, name) is allowed
    assert choices(config.EPConfig, "sampler") == tuple(cumulative.ROLLOUT_STEPS)
    assert choices(config.EPConfig, "backprop") is cumulative.BACKPROPS
    assert config.EPConfig().multipliers == list(MULTIPLIERS)
    assert choices(config.LossConfig, "name") is LOSSES
    assert choices(config.LossConfig, "weighting") == (*simple.WEIGHTINGS, None)
    assert choices(config.LossConfig, "sigma_sampling") is simple.SIGMA_SAMPLING
    assert choices(config.SampleConfig, "sampler") is samplers.NAMES
    assert choices(config.SampleConfig, "grid") is grids.GRIDS
    assert choices(config.SampleConfig, "spacing") is grids.SPACINGS
    assert choices(config.SampleConfig, "variance") is samplers.VARIANCES


def test_ep_batch_is_checked_by_the_loss_module_with_one_message():
    from errprop.losses.cumulative import check_batch

    with pytest.raises(ErrpropError, match=r"loss 'ep' needs a batch of ≥ 4 .*got 2$"):
        config.load(overrides=["loss.name=ep", "train.batch_size=2"])
    config.load(overrides=["loss.name=ep", "train.batch_size=4"])
    config.load(overrides=["loss.name=simple", "train.batch_size=2"])
    with pytest.raises(ErrpropError, match=r"≥ 4 .*got 3 per rank \(train.batch_size 6 over 2 ranks\)"):
        check_batch(6, ranks=2)
    check_batch(8, ranks=2)
