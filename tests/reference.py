"""A plain NumPy (float64) transformer written independently of sdt_jax.

Loops over sequences, heads and tokens; used as the slow reference the
routed and dense models are checked against.
"""

from __future__ import annotations

import math

import numpy as np


def _gelu(x):  # tanh approximation, as jax.nn.gelu's default
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def _rms(x, scale=None, eps=1e-6):
  y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
  return y if scale is None else y * scale


def _rotate(v, position, theta):
  """Rotary embedding of one head vector v [K] at an integer position."""
  half = v.shape[-1] // 2
  out = np.empty_like(v)
  for i in range(half):
    angle = position * theta ** (-i / half)
    a, b = v[i], v[i + half]
    out[i] = a * math.cos(angle) - b * math.sin(angle)
    out[i + half] = b * math.cos(angle) + a * math.sin(angle)
  return out


def block_update(p, x_SxD, pos_S, theta=10_000.0):
  """f(x) of one pre-norm block on ONE sequence (or sub-sequence) whose
  tokens sit at the original positions pos_S (ascending)."""
  p = {k: np.asarray(v, np.float64) for k, v in p.items()}
  S = x_SxD.shape[0]
  H, K = p["wq"].shape[1], p["wq"].shape[2]
  h = _rms(x_SxD, p["attn_norm"])
  attn = np.zeros_like(x_SxD)
  for head in range(H):
    q = np.stack([_rotate(h[s] @ p["wq"][:, head], pos_S[s], theta) for s in range(S)])
    k = np.stack([_rotate(h[s] @ p["wk"][:, head], pos_S[s], theta) for s in range(S)])
    v = h @ p["wv"][:, head]
    for s in range(S):
      visible = [t for t in range(S) if pos_S[t] <= pos_S[s]]
      scores = np.array([q[s] @ k[t] for t in visible]) / math.sqrt(K)
      w = np.exp(scores - scores.max())
      w /= w.sum()
      attn[s] += (w @ v[visible]) @ p["wo"][head]
  m = _gelu(_rms(x_SxD + attn, p["mlp_norm"]) @ p["w_up"]) @ p["w_down"]
  return attn + m


def dense_logits(params, tokens_S, theta=10_000.0):
  """Logits [S, V] of the dense model on one sequence."""
  x = np.asarray(params["embed_VxD"], np.float64)[np.asarray(tokens_S)]
  pos = np.arange(len(tokens_S))
  n_layers = params["wq"].shape[0]
  for layer in range(n_layers):
    p = {k: params[k][layer] for k in ("attn_norm", "wq", "wk", "wv", "wo",
                                       "mlp_norm", "w_up", "w_down")}
    x = x + block_update(p, x, pos, theta)
  h = _rms(x, np.asarray(params["final_norm"], np.float64))
  return h @ np.asarray(params["head_DxV"], np.float64)
