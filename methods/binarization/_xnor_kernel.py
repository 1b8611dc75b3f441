"""A packed-bit XNOR-popcount convolution, compiled once per machine with ``torch.utils.cpp_extension``.

Inputs and weights are binarized to bits (1 for x >= 0, i.e. +1; 0 for -1) and packed along the
channel dimension into 64-bit words. For one output position and filter, the +/-1 dot product over
the valid (non-padded) taps is ``2 * popcount(~(x ^ w) & channel_mask) - n_valid``: exactly the value a
float convolution of the +/-1 tensors with zero padding computes. The result is scaled by the
per-filter ``alpha`` in the kernel. OpenMP parallelises over images.

``load()`` builds the extension on first use (the system C++ compiler, ``-O3 -march=native``; the
build is cached by torch under ``TORCH_EXTENSIONS_DIR``) and returns None, with the reason in
``load_error()``, when no compiler is available, so callers fall back or skip cleanly.
"""
from __future__ import annotations

import os
import threading

_SOURCE = r"""
#include <torch/extension.h>
#include <cstdint>

// x: (B, C, H, W) float -> (B, H, W, words) int64; bit (c % 64) of word (c / 64) set where x >= 0.
torch::Tensor pack_channels(torch::Tensor x) {
  TORCH_CHECK(x.dim() == 4 && x.scalar_type() == torch::kFloat32, "pack_channels: float32 (B,C,H,W)");
  x = x.contiguous();
  const int64_t B = x.size(0), C = x.size(1), HW = x.size(2) * x.size(3);
  const int64_t words = (C + 63) / 64;
  auto out = torch::zeros({x.size(0), x.size(2), x.size(3), words}, torch::kInt64);
  const float* px = x.data_ptr<float>();
  uint64_t* po = reinterpret_cast<uint64_t*>(out.data_ptr<int64_t>());
  #pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t c = 0; c < C; ++c) {
      const float* row = px + (b * C + c) * HW;
      const uint64_t bit = 1ULL << (c & 63);
      uint64_t* dst = po + b * HW * words + (c >> 6);
      for (int64_t i = 0; i < HW; ++i)
        if (row[i] >= 0.0f) dst[i * words] |= bit;
    }
  }
  return out;
}

// xp: (B, H, W, words) packed input; wp: (O, KH, KW, words) packed weights; alpha: (O,) float.
// out[b, o, y, x] = alpha[o] * sum over valid taps of (+/-1 input) * (+/-1 weight).
torch::Tensor xnor_conv(torch::Tensor xp, torch::Tensor wp, int64_t channels, int64_t stride,
                        int64_t pad, torch::Tensor alpha) {
  TORCH_CHECK(xp.size(3) == wp.size(3), "xnor_conv: word counts differ");
  xp = xp.contiguous(); wp = wp.contiguous(); alpha = alpha.contiguous().to(torch::kFloat32);
  const int64_t B = xp.size(0), H = xp.size(1), W = xp.size(2), words = xp.size(3);
  const int64_t O = wp.size(0), KH = wp.size(1), KW = wp.size(2);
  const int64_t OH = (H + 2 * pad - KH) / stride + 1, OW = (W + 2 * pad - KW) / stride + 1;
  auto out = torch::empty({B, O, OH, OW}, torch::kFloat32);
  const uint64_t* px = reinterpret_cast<const uint64_t*>(xp.data_ptr<int64_t>());
  const uint64_t* pw = reinterpret_cast<const uint64_t*>(wp.data_ptr<int64_t>());
  const float* pa = alpha.data_ptr<float>();
  float* po = out.data_ptr<float>();
  const int64_t rem = channels & 63;
  const uint64_t last_mask = rem ? ((1ULL << rem) - 1) : ~0ULL;
  #pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t oy = 0; oy < OH; ++oy) {
      for (int64_t ox = 0; ox < OW; ++ox) {
        int64_t taps_x[64], taps_w[64];   // valid (input offset, weight offset) pairs, KH*KW <= 64
        int64_t nt = 0;
        for (int64_t ky = 0; ky < KH; ++ky) {
          const int64_t iy = oy * stride - pad + ky;
          if (iy < 0 || iy >= H) continue;
          for (int64_t kx = 0; kx < KW; ++kx) {
            const int64_t ix = ox * stride - pad + kx;
            if (ix < 0 || ix >= W) continue;
            taps_x[nt] = ((b * H + iy) * W + ix) * words;
            taps_w[nt] = (ky * KW + kx) * words;
            ++nt;
          }
        }
        const int64_t n_valid = nt * channels;
        for (int64_t o = 0; o < O; ++o) {
          const uint64_t* wo = pw + o * KH * KW * words;
          int64_t matches = 0;
          for (int64_t t = 0; t < nt; ++t) {
            const uint64_t* xv = px + taps_x[t];
            const uint64_t* wv = wo + taps_w[t];
            for (int64_t k = 0; k + 1 < words; ++k) matches += __builtin_popcountll(~(xv[k] ^ wv[k]));
            matches += __builtin_popcountll(~(xv[words - 1] ^ wv[words - 1]) & last_mask);
          }
          po[((b * O + o) * OH + oy) * OW + ox] = static_cast<float>(2 * matches - n_valid) * pa[o];
        }
      }
    }
  }
  return out;
}
"""

_lock = threading.Lock()
_state: dict[str, object] = {}


def load():
    """The compiled extension module (``pack_channels``, ``xnor_conv``), or None when it cannot be built."""
    with _lock:
        if "module" not in _state:
            try:
                from torch.utils.cpp_extension import load_inline
                _state["module"] = load_inline(
                    name="mcbench_xnor_popcount_v1", cpp_sources=[_SOURCE],
                    functions=["pack_channels", "xnor_conv"],
                    extra_cflags=["-O3", "-march=native", "-fopenmp"], extra_ldflags=["-fopenmp"],
                    verbose=bool(os.environ.get("MCBENCH_VERBOSE_BUILD")))
                _state["error"] = ""
            except Exception as e:  # no compiler, no ninja, a failed build: callers fall back
                _state["module"] = None
                _state["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
        return _state["module"]


def load_error() -> str:
    load()
    return str(_state.get("error", ""))


def serves(x) -> bool:
    """Whether the packed kernel runs this call: inference (no autograd) on a CPU tensor. It is a CPU kernel
    reading host memory; elsewhere (a CUDA tensor, or training) the caller runs its float +/-1 simulation."""
    import torch

    return x.device.type == "cpu" and not torch.is_grad_enabled()


def layer_forward(layer, x, scale):
    """Sign(x) (*) Sign(layer.weight) * ``scale`` per output channel, on the kernel (no bias added).

    ``layer`` is a Conv2d (x: B x C x H x W -> B x O x H' x W', its stride and zero padding) or a Linear
    (x: B x C -> B x O, run as a 1x1 convolution). Its sign weights are packed on first use and cached on
    the layer (not in its state dict). The extension call is invisible to TorchScript (a trace would
    freeze its output as a constant), so tracing refuses and a deploy step falls back to the eager model.
    """
    import torch

    if torch.jit.is_tracing():
        raise RuntimeError("the packed XNOR-popcount kernel cannot be traced; run the model eagerly")
    if x.device.type != "cpu":     # the C++ kernel would read device memory as host memory
        raise ValueError(f"the packed XNOR-popcount kernel runs on CPU tensors, not {x.device.type}")
    ext = load()
    conv = x.dim() == 4
    packed = layer.__dict__.get("_packed_weight")
    if packed is None:
        w = layer.weight.detach().float()
        packed = ext.pack_channels(w if conv else w[:, :, None, None].contiguous())
        layer._packed_weight = packed
    x4 = x if conv else x[:, :, None, None]
    out = ext.xnor_conv(ext.pack_channels(x4.float().contiguous()), packed, x4.shape[1],
                        layer.stride[0] if conv else 1, layer.padding[0] if conv else 0, scale)
    return out if conv else out.flatten(1)
