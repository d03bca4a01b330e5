"""The routed model against independent references and its invariants."""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized  # chex.variants builds on absltest
from flax import nnx

from conftest import SMALL, arrays, make_model, random_tokens
import reference
from sdt_jax.config import ModelConfig, tokens_for
from sdt_jax.model import next_token_loss, routing
from sdt_jax.model.layers import block_update

BLOCK_KEYS = ("attn_norm", "wq", "wk", "wv", "wo", "mlp_norm", "w_up", "w_down")


def layer(params: dict, i: int) -> dict:
  return {k: params[k][i] for k in BLOCK_KEYS}


class ReferenceTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_dense_model_matches_numpy_reference(self):
    model = make_model(policy="dense")
    tokens = random_tokens(0, 2, 12)
    logits, stats = self.variant(lambda t: model(t))(tokens)
    chex.assert_shape(logits, (2, 12, SMALL.vocab_size))
    for b in range(2):
      want = reference.dense_logits(arrays(model), np.asarray(tokens[b]))
      np.testing.assert_allclose(logits[b], want, atol=2e-4, rtol=2e-4)
    np.testing.assert_array_equal(stats.layers_per_token_BxS, SMALL.n_layers)

  @chex.variants(with_jit=True, without_jit=True)
  def test_capacity_one_with_unit_gate_equals_dense(self):
    # Same seed: the routed model draws the dense model's block weights first
    # (routers come after); copying them makes that explicit.
    routed = make_model(policy="mod", route_every=2, capacity=1.0, gate="one")
    dense = make_model(policy="dense", seed=1)
    for name, value in arrays(dense).items():
      getattr(dense, name)[...] = jnp.asarray(arrays(routed)[name])
    tokens = random_tokens(1, 3, 16)
    got, stats = self.variant(lambda t: routed(t))(tokens)
    want, _ = self.variant(lambda t: dense(t))(tokens)
    chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(stats.layers_per_token_BxS, SMALL.n_layers)

  @chex.variants(with_jit=True, without_jit=True)
  def test_gathered_block_equals_block_on_extracted_subsequence(self):
    model = make_model()
    p = layer(arrays(model), 1)
    x_BxSxD = jax.random.normal(jax.random.key(2), (2, 10, SMALL.d_model))
    pos_BxS = jnp.broadcast_to(jnp.arange(10), (2, 10))
    score_BxS = jax.random.normal(jax.random.key(3), (2, 10))
    gate_BxS = jax.nn.sigmoid(score_BxS)
    idx_BxK = routing.top_k_sorted(score_BxS, 4)
    update = lambda x, pos, km: block_update(p, x, pos, km)
    out = self.variant(routing.apply_top_k, static_argnums=4)(
        x_BxSxD, pos_BxS, idx_BxK, gate_BxS, update)
    x = np.asarray(x_BxSxD, np.float64)
    for b in range(2):
      sel = sorted(np.argsort(-np.asarray(score_BxS[b]))[:4])  # plain top-4
      np.testing.assert_array_equal(idx_BxK[b], sel)
      f = reference.block_update(p, x[b, sel], np.array(sel))
      want = x[b, sel] + np.asarray(gate_BxS[b, np.array(sel)])[:, None] * f
      np.testing.assert_allclose(out[b, np.array(sel)], want, atol=1e-5)


class RoutingInvariantTest(parameterized.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_routed_block_changes_only_selected_tokens(self):
    p = layer(arrays(make_model()), 1)
    x_BxSxD = jax.random.normal(jax.random.key(4), (3, 16, SMALL.d_model))
    pos_BxS = jnp.broadcast_to(jnp.arange(16), (3, 16))
    score_BxS = jax.random.normal(jax.random.key(5), (3, 16))
    update = lambda x, pos, km: block_update(p, x, pos, km)
    idx = routing.top_k_sorted(score_BxS, 5)
    sel = np.asarray(routing.membership(idx, 16))
    out = self.variant(routing.apply_top_k, static_argnums=4)(
        x_BxSxD, pos_BxS, idx, jax.nn.sigmoid(score_BxS), update)
    masked = self.variant(routing.apply_masked, static_argnums=4)(
        x_BxSxD, pos_BxS, jnp.asarray(sel), jax.nn.sigmoid(score_BxS), update)
    self.assertEqual(sel.sum(), 3 * 5)
    for y in (out, masked):
      y, x = np.asarray(y), np.asarray(x_BxSxD)
      np.testing.assert_array_equal(y[~sel].view(np.uint32), x[~sel].view(np.uint32))
      self.assertTrue(np.all(np.any(y[sel] != x[sel], axis=-1)))
    # The masked (causal-mode) path computes the same update for the subset.
    np.testing.assert_allclose(out, masked, atol=1e-5)

  def test_top_k_is_sorted_ascending_and_k_is_ceil(self):
    score = jnp.array([[0.1, 5.0, -1.0, 3.0, 4.0]])
    np.testing.assert_array_equal(routing.top_k_sorted(score, 3), [[1, 3, 4]])
    self.assertEqual(tokens_for(0.1, 30), 3)   # not 4 from 0.1 * 30 round-off
    self.assertEqual(tokens_for(0.125, 20), 3)
    self.assertEqual(tokens_for(0.001, 20), 1)
    self.assertEqual(tokens_for(1.0, 20), 20)

  def test_stats_of_mod_model(self):
    model = make_model(policy="mod", route_every=2, capacity=0.25)
    _, stats = model(random_tokens(6, 2, 16))
    chex.assert_shape(stats.layers_per_token_BxS, (2, 16))
    chex.assert_shape(stats.layer_fraction_R, (2,))
    np.testing.assert_allclose(stats.layer_fraction_R, 0.25)
    # 2 dense blocks for everyone, plus 2 routed blocks on a quarter each.
    np.testing.assert_allclose(stats.mean_layers, 2 + 2 * 0.25, rtol=1e-6)
    self.assertTrue(np.all((stats.agreement_R >= 0) & (stats.agreement_R <= 1)))
    self.assertTrue(np.isfinite(stats.aux_loss))


class CausalityTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("dense", dict(policy="dense"), "topk"),
      ("mod_causal", dict(policy="mod", capacity=0.25), "causal"),
      ("mod_mlp_causal", dict(policy="mod", causal_predictor="mlp"), "causal"),
      ("depth_causal", dict(policy="depth", route_every=1, capacity=0.25), "causal"),
  )
  def test_future_tokens_do_not_change_past_logits(self, routing_kwargs, mode):
    model = make_model(**routing_kwargs)
    fwd = jax.jit(lambda t: model(t, routing_mode=mode)[0])
    tokens = random_tokens(7, 2, 16)
    base = fwd(tokens)
    for t in (3, 8, 14):
      changed = tokens.at[:, t + 1:].set((tokens[:, t + 1:] + 7) % SMALL.vocab_size)
      got = fwd(changed)
      np.testing.assert_allclose(got[:, :t + 1], base[:, :t + 1], atol=1e-6)
      self.assertFalse(np.allclose(got[:, t + 1:], base[:, t + 1:]))

  def test_top_k_mode_is_not_causal(self):
    """Documented: top-k ranks a whole sequence, so the future can change
    which past tokens are routed, and hence their logits."""
    model = make_model(policy="mod", capacity=0.25)
    fwd = jax.jit(lambda t: model(t, routing_mode="topk")[0])
    tokens = random_tokens(8, 4, 16)
    base = fwd(tokens)
    leaked = False
    for seed in range(8):
      future = random_tokens(100 + seed, 4, 8)
      got = fwd(tokens.at[:, 8:].set(future))
      leaked |= not np.allclose(got[:, :8], base[:, :8], atol=1e-6)
    self.assertTrue(leaked)


def _loss(model, tokens, mode="topk"):
  logits, stats = model(tokens, routing_mode=mode)
  return next_token_loss(logits, tokens)[0] + 0.1 * stats.aux_loss


class GradientTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("mod_router", dict(policy="mod"), ("router_GxD",)),
      ("mod_mlp", dict(policy="mod", causal_predictor="mlp"),
       ("router_GxD", "pred_in_GxDxP", "pred_out_GxP")),
      ("depth", dict(policy="depth", route_every=1, capacity=0.25),
       ("scorer_in_DxD", "scorer_out_D", "threshold_G", "log_scale_G")),
      ("mod_logit_gate", dict(policy="mod", gate="logit"), ("router_GxD",)),
  )
  def test_gradients_reach_every_router_and_are_finite(self, kwargs, names):
    model = make_model(**kwargs)
    grads = nnx.grad(_loss)(model, random_tokens(9, 2, 16))
    for leaf in jax.tree.leaves(grads):
      self.assertTrue(np.all(np.isfinite(leaf)))
    for name in names:
      g = np.asarray(getattr(grads, name)[...])
      per_block = g.reshape(g.shape[0], -1) if g.ndim > 1 else g[:, None]
      if name.startswith("scorer"):
        per_block = g.reshape(1, -1)
      self.assertTrue(np.all(np.abs(per_block).sum(axis=1) > 0), name)

  def test_remat_policies_give_the_same_gradients(self):
    tokens = random_tokens(10, 2, 16)
    grads = {}
    for remat in ("none", "full", "dots"):
      cfg = ModelConfig(**{**SMALL.__dict__, "remat": remat})
      model = make_model(cfg, policy="mod", capacity=0.5)
      grads[remat] = nnx.state(nnx.grad(_loss)(model, tokens))
    chex.assert_trees_all_close(grads["full"], grads["none"], atol=1e-6)
    chex.assert_trees_all_close(grads["dots"], grads["none"], atol=1e-6)


class DepthPolicyTest(parameterized.TestCase):

  @parameterized.parameters("topk", "causal")
  def test_routed_sets_are_nested_across_depth(self, mode):
    model = make_model(policy="depth", route_every=1, capacity=0.2)
    if mode == "causal":  # spread thresholds so the causal sets differ
      model.threshold_G[...] = jnp.array([-1.0, -0.2, 0.0, 0.3])
    _, stats = model(random_tokens(11, 3, 20), routing_mode=mode)
    sel = np.asarray(stats.selected_RxBxS)
    for deeper in range(1, sel.shape[0]):
      self.assertTrue(np.all(sel[deeper] <= sel[deeper - 1]))
    if mode == "topk":
      self.assertTrue(np.any(sel[0] != sel[-1]))

  def test_layers_per_token_matches_the_schedule(self):
    schedule = (1.0, 0.5, 0.5, 0.25)
    model = make_model(policy="depth", route_every=1, depth_schedule=schedule)
    S = 20
    _, stats = model(random_tokens(12, 2, S))
    want = sum(tokens_for(c, S) for c in schedule) / S
    np.testing.assert_allclose(stats.mean_layers, want, rtol=1e-6)
    np.testing.assert_allclose(stats.layer_fraction_R,
                               [tokens_for(c, S) / S for c in schedule])

  def test_depth_with_dense_blocks_between(self):
    model = make_model(policy="depth", route_every=2, capacity=0.25)
    _, stats = model(random_tokens(13, 2, 16))
    # groups: [dense, routed@1.0], [dense, routed@0.25]
    np.testing.assert_allclose(stats.mean_layers, 2 + 1.0 + 0.25, rtol=1e-6)


class OptionsTest(parameterized.TestCase):

  def test_router_noise_needs_rng_and_changes_selection(self):
    model = make_model(policy="mod", capacity=0.25, noise=2.0)
    tokens = random_tokens(14, 2, 32)
    _, clean_a = model(tokens)
    _, clean_b = model(tokens)
    np.testing.assert_array_equal(clean_a.selected_RxBxS, clean_b.selected_RxBxS)
    _, noisy = model(tokens, rng=jax.random.key(0))
    self.assertTrue(np.any(noisy.selected_RxBxS != clean_a.selected_RxBxS))
    _, causal = model(tokens, routing_mode="causal", rng=jax.random.key(0))
    _, causal_clean = model(tokens, routing_mode="causal")
    np.testing.assert_array_equal(causal.selected_RxBxS, causal_clean.selected_RxBxS)

  def test_capacity_override_is_the_curriculum_hook(self):
    model = make_model(policy="mod", capacity=0.5,
                       curriculum=((0, 1.0), (10, 0.5), (20, 0.25)))
    self.assertEqual([model.route.capacity_at(s) for s in (0, 9, 10, 25)],
                     [1.0, 1.0, 0.5, 0.25])
    _, stats = model(random_tokens(15, 2, 16), capacity=0.25)
    np.testing.assert_allclose(stats.layer_fraction_R, 0.25)

  @parameterized.parameters("mod", "depth")
  def test_unrolled_layers_equal_scanned_layers(self, policy):
    tokens = random_tokens(17, 2, 16)
    out = {}
    for scan in (True, False):
      cfg = ModelConfig(**{**SMALL.__dict__, "scan_layers": scan})
      model = make_model(cfg, policy=policy, route_every=1, capacity=0.5)
      out[scan] = jax.jit(lambda t: model(t)[0])(tokens)
    np.testing.assert_allclose(out[False], out[True], atol=1e-5)

  def test_bfloat16_compute_is_finite(self):
    cfg = ModelConfig(**{**SMALL.__dict__, "dtype": "bfloat16"})
    model = make_model(cfg, policy="mod", capacity=0.5)
    logits, stats = model(random_tokens(16, 2, 16))
    self.assertEqual(logits.dtype, jnp.float32)
    self.assertTrue(np.all(np.isfinite(logits)))

  def test_unknown_routing_mode_is_one_clear_error(self):
    with pytest.raises(ValueError, match="routing_mode='greedy' is unknown"):
      make_model()(random_tokens(0, 1, 8), routing_mode="greedy")
