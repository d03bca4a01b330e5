"""Bad model and routing configs raise one clear line naming the key."""

from __future__ import annotations

import pytest
from flax import nnx

from sdt_jax.config import (ConfigError, ModelConfig, RoutingConfig,
                            routed_capacities)
from sdt_jax.model import SparseDepthTransformer


def _assert_one_line_error(cls, kwargs, key):
  with pytest.raises(ConfigError) as err:
    cls(**kwargs)
  assert key in str(err.value)
  assert "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, key", [
    (dict(capacity=0.0), "routing.capacity=0.0 is outside (0, 1]"),
    (dict(capacity=1.5), "routing.capacity=1.5 is outside (0, 1]"),
    (dict(capacity=-0.1), "routing.capacity=-0.1"),
    (dict(policy="expert"), "routing.policy='expert' is unknown; choose one of mod, depth, dense"),
    (dict(gate="relu"), "routing.gate='relu' is unknown"),
    (dict(causal_predictor="oracle"), "routing.causal_predictor='oracle'"),
    (dict(route_every=-1), "routing.route_every=-1"),
    (dict(noise=-1.0), "routing.noise=-1.0"),
    (dict(depth_schedule=(0.5, 1.0)), "routing.depth_schedule=[0.5, 1.0] must not increase"),
    (dict(curriculum=((10, 0.5), (5, 0.25))), "routing.curriculum steps [10, 5]"),
    (dict(curriculum=((0, 2.0),)), "routing.curriculum capacity at step 0=2.0"),
])
def test_bad_routing_config(kwargs, key):
  _assert_one_line_error(RoutingConfig, kwargs, key)


@pytest.mark.parametrize("kwargs, key", [
    (dict(d_model=64, n_heads=3), "model.n_heads=3 does not divide model.d_model=64"),
    (dict(d_model=30, n_heads=2), "must be even for rotary"),
    (dict(n_layers=0), "model.n_layers=0 must be a positive integer"),
    (dict(vocab_size=2.5), "model.vocab_size=2.5"),
    (dict(dtype="float8"), "model.dtype='float8' is unknown"),
    (dict(remat="sometimes"), "model.remat='sometimes' is unknown"),
])
def test_bad_model_config(kwargs, key):
  _assert_one_line_error(ModelConfig, kwargs, key)


@pytest.mark.parametrize("routing, key", [
    (RoutingConfig(route_every=8), "routing.route_every=8 is larger than model.n_layers=4"),
    (RoutingConfig(route_every=3), "routing.route_every=3 does not divide model.n_layers=4"),
    (RoutingConfig(policy="depth", route_every=1, depth_schedule=(1.0, 0.5)),
     "routing.depth_schedule has 2 entries but the model has 4 routed blocks"),
    (RoutingConfig(policy="mod", depth_schedule=(1.0, 0.5)),
     "routing.depth_schedule is only used by routing.policy=depth"),
])
def test_incompatible_model_and_routing(routing, key):
  with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
    SparseDepthTransformer(ModelConfig(n_layers=4, d_model=32, n_heads=2),
                           routing, rngs=nnx.Rngs(0))


def test_dense_ignores_route_every():
  SparseDepthTransformer(ModelConfig(n_layers=4, d_model=32, n_heads=2),
                         RoutingConfig(policy="dense", route_every=8),
                         rngs=nnx.Rngs(0))


def test_depth_schedule_defaults_to_linear_and_scales_with_capacity():
  route = RoutingConfig(policy="depth", route_every=1, capacity=0.25)
  assert routed_capacities(route, 4) == pytest.approx((1.0, 0.75, 0.5, 0.25))
  explicit = RoutingConfig(policy="depth", depth_schedule=(1.0, 0.5, 0.25))
  assert routed_capacities(explicit, 3) == (1.0, 0.5, 0.25)
  assert routed_capacities(explicit, 3, capacity=0.125) == (0.5, 0.25, 0.125)
  assert routed_capacities(RoutingConfig(capacity=0.5), 3) == (0.5, 0.5, 0.5)
