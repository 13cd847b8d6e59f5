"""Any input to the config loader gives a valid Config or an ErrpropError — never another exception."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from errprop import config
from errprop.errors import ErrpropError

SECTIONS = ["data", "process", "model", "loss", "train", "sample", "sa", "ep", "bogus"]
FIELDS = ["name", "steps", "batch_size", "lr", "K", "lam", "L", "kind", "T", "channel_mult", "grid",
          "sigmas", "sampler", "weighting", "beta_start", "beta_end", "ema_decay", "seed", "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=8),
                    st.sampled_from(["vp", "ve", "sa", "ep", "ddim", "linear", "3e-4"]))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.sampled_from(FIELDS), inner, max_size=3)),
    max_leaves=8)
sections = st.one_of(values, st.dictionaries(st.sampled_from(FIELDS + SECTIONS), values, max_size=4))
configs = st.dictionaries(st.sampled_from(SECTIONS), sections, max_size=4)


def _check(raw):
    try:
        cfg = config.from_dict(raw)
    except ErrpropError as e:
        assert str(e)
        return
    assert isinstance(cfg, config.Config)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs)
def test_random_nested_input(raw):
    _check(raw)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60))
def test_random_yaml_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text)
    try:
        config.load(path)
    except ErrpropError:
        pass
