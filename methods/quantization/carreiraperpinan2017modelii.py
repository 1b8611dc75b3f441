"""Model compression as constrained optimization, with application to neural nets. Part II: quantization.

Carreira-Perpinan, Idelbayev (2017), arXiv:1707.04319. Key: carreiraperpinan2017modelii.
Implements the learning-compression (LC) algorithm for quantization (Sections 3-5):
    min_w L(w) s.t. w = Delta(Theta): every weight of a layer takes a value of the layer's codebook C;
    augmented Lagrangian with penalty mu_k = mu_0 a^k and multipliers lambda:
    L step: min_w L(w) + mu/2 ||w - Delta(Theta) - lambda/mu||^2  (the harness's training loop, one run per
            LC iteration, the penalty added to the loss);
    C step: Theta = argmin ||w - lambda/mu - Delta(Theta)||^2: per layer, k-means on the scalar weights for an
            adaptive codebook of K entries (warm-started from the previous codebook, Section 4.1), or for
            fixed codebooks the optimal assignment: binary {-a, +a} with a = mean |w| and ternary {-a, 0, +a}
            with the best threshold (Section 4.2, with a learned scale), or powers of two
            {0, +-1, +-1/2, ..., +-2^-C} (no scale);
    lambda <- lambda - mu (w - Delta(Theta));
    the first C step on the reference net is direct compression (DC); the result is Delta(Theta).
    The L/C loop is the shared one of ``methods/flows/lc.py``; this file gives the C step.
Real: storage. The encoded file stores each layer's codebook indices bit-packed at log2(K) bits with its
float32 codebook. Simulated: compute (the codebook values held as float32 on float kernels).
Deviations: each L step is one run of the harness's loop (AdamW, cosine schedule restarted per
step) instead of SGD with a decaying rate continuing across steps; biases and BN stay float32 (the
paper quantizes weights only too). The paper grows a small mu slowly over tens of L steps (a about
1.1); with our two to four L steps the penalty must start large: mu0 = 1, a = 10, chosen on validation
(task CNN 32-64-128 trained 3 epochs on 5,000 images, K = 4, two L steps of one epoch; direct
compression 64.8%, baseline 81.4%): mu (0.001, 0.004) gave 66.8%, (0.01, 0.3) 77.0%, (0.1, 3) 79.3%,
(0.01, 1) 79.1%, (1, 10) 80.3%. The row's validation score is measured after the last C step.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from mcbench.methods.encoding import container
from mcbench.methods.flows import lc
from mcbench.methods.protocols import Compressed, EncodedModel, MethodContext, QuantizationMethod
from mcbench.methods.registry import register

LAYERS = (nn.Conv2d, nn.Linear)


def kmeans_1d(w: torch.Tensor, k: int, init: torch.Tensor | None = None, iters: int = 30) -> torch.Tensor:
    """Lloyd's algorithm on scalars: the codebook (sorted) minimising sum (w - c_assign)^2."""
    x = w.detach().flatten().double()
    c = (init.double().sort().values if init is not None and len(init) == k
         else torch.quantile(x, torch.linspace(0, 1, k + 2, dtype=x.dtype, device=x.device)[1:-1]))
    for _ in range(iters):
        assign = (x[:, None] - c[None]).abs().argmin(dim=1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.zeros_like(c).index_add_(0, assign, torch.ones_like(x))
        new = torch.where(counts > 0, sums / counts.clamp(min=1), c)
        if torch.equal(new, c):
            break
        c = new
    return c.sort().values.to(w.dtype)


def nearest(w: torch.Tensor, book: torch.Tensor) -> torch.Tensor:
    return book[(w.unsqueeze(-1) - book).abs().argmin(dim=-1)]


def binary_book(w: torch.Tensor) -> torch.Tensor:
    a = w.abs().mean()
    return torch.stack([-a, a])


def ternary_book(w: torch.Tensor) -> torch.Tensor:
    """{-a, 0, a} minimising ||w - q||^2: keep the j largest |w| at a = their mean, j maximising (sum)^2 / j."""
    mags = w.detach().abs().flatten().sort(descending=True).values
    csum = mags.cumsum(0)
    j = int(torch.argmax(csum ** 2 / torch.arange(1, len(mags) + 1, dtype=mags.dtype)))
    a = csum[j] / (j + 1)
    return torch.stack([-a, torch.zeros_like(a), a])


def pow2_book(c: int, dtype=torch.float32) -> torch.Tensor:
    mags = 2.0 ** -torch.arange(0, c + 1, dtype=dtype)
    return torch.cat([-mags, torch.zeros(1, dtype=dtype), mags]).sort().values


def c_step(w: torch.Tensor, codebook: str, k: int, previous: torch.Tensor | None, pow2_c: int) -> torch.Tensor:
    """The codebook minimising ||w - Delta(Theta)||^2 for this layer (values assigned by ``nearest``)."""
    if codebook == "adaptive":
        return kmeans_1d(w, k, previous)
    if codebook == "binary":
        return binary_book(w)
    if codebook == "ternary":
        return ternary_book(w)
    return pow2_book(pow2_c, w.dtype)


def book_size(codebook: str, k: int, pow2_c: int) -> int:
    return {"adaptive": k, "binary": 2, "ternary": 3, "pow2": 2 * (pow2_c + 1) + 1}[codebook]


@register(family="quantization")
class carreiraperpinan2017modelii(QuantizationMethod):
    from_scratch = False

    @dataclass
    class Config:
        codebook: Literal["adaptive", "binary", "ternary", "pow2"] = "adaptive"
        k: Annotated[int, Field(ge=2, le=256)] = 4           # adaptive codebook entries per layer
        pow2_c: Annotated[int, Field(ge=0, le=14)] = 6       # powers of two down to 2^-C
        lc_iterations: Annotated[int, Field(ge=0, le=50)] = 0   # 0: the budget's fine-tuning epochs (at least 2)
        mu0: Annotated[float, Field(gt=0.0)] = 1.0             # chosen on validation (see the module docstring)
        mu_growth: Annotated[float, Field(gt=1.0)] = 10.0      # a: mu_k = mu0 a^k

    @property
    def bits(self) -> int:
        c = self.config
        return max(1, (book_size(c.codebook, c.k, c.pow2_c) - 1).bit_length())

    def apply(self, ctx: MethodContext) -> Compressed:
        c = self.config
        model = ctx.load_baseline().to(ctx.device)
        layers = {n: m for n, m in model.named_modules() if isinstance(m, LAYERS)}
        books: dict[str, torch.Tensor] = {}

        def compression(v: dict[str, torch.Tensor], mu: float) -> dict[str, torch.Tensor]:   # the C step
            for n, x in v.items():
                books[n] = c_step(x, c.codebook, c.k, books.get(n), c.pow2_c)
            return {n: nearest(x, books[n]) for n, x in v.items()}

        run = lc.learning_compression(ctx, model, layers, compression, iterations=c.lc_iterations
                                      or max(2, ctx.epochs_finetune), mu0=c.mu0, growth=c.mu_growth)
        report = run.report
        if report is not None:   # the row's validation score is the quantized model's, not the last L step's
            report = dataclasses.replace(report, val_top1_acc_pct=ctx.evaluate(model.eval()))
        return self._compressed(model.eval(), ctx, report)

    def _compressed(self, model: nn.Module, ctx: MethodContext, report) -> Compressed:
        bits = self.bits
        plan = lambda m: {f"{n}.weight": container.Codebook(bits) for n, l in m.named_modules()  # noqa: E731
                          if isinstance(l, LAYERS)}
        encoded = EncodedModel(encode=lambda m: container.encode_model(m, plan(m)),
                               decode=lambda b: container.decode_model(b, ctx.build_baseline),
                               format=f"{self.config.codebook} codebook per layer, {bits}-bit packed indices")
        return Compressed(model, real=False, storage_real=True, compute_real=False, encoded=encoded,
                          bits_per_weight=float(bits), train_report=report,
                          note=f"LC quantization, {self.config.codebook} codebook: storage real ({bits}-bit indices "
                               "in the encoded file); compute simulated (codebook values on float kernels)",
                          extra={"codebook": self.config.codebook, "codebook_entries":
                                 book_size(self.config.codebook, self.config.k, self.config.pow2_c)})
