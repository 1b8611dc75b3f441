"""N2N Learning: Network to Network Compression via Policy Gradient Reinforcement Learning.

Ashok, Rhinehart, Beainy, Kitani (ICLR 2018), arXiv:1709.06030. Key: ashok2017n2n.
Implements the two-stage search of Section 3 and its reward (Section 3.4):
    Stage 1, layer removal (Sec. 3.2): a bidirectional LSTM reads the teacher's layer descriptions
        x_t = (layer type, kernel, stride, padding, outputs, skip start, skip end) and outputs, per
        layer, a Bernoulli keep/remove action.
    Stage 2, layer shrinkage (Sec. 3.3): a unidirectional LSTM reads the layers kept by stage 1
        (each description plus the previous action) and picks, per layer, the fraction of its
        outputs to keep from {0.1, 0.2, ..., 1.0}.
    Reward (Sec. 3.4): R = R_c * R_a, R_c = C (2 - C), C = 1 - #params(student) / #params(teacher),
        R_a = Acc(student) / Acc(teacher); an invalid architecture (here: no layer left) gets R = -1.
    REINFORCE (Sec. 3.5): grad J = 1/m sum_k sum_t grad log pi(a_t | h_t) (R_k - b), b an exponential
        moving average of previous rewards.
    Every child is built from the teacher's architecture, trained briefly by distillation from the
    teacher (logit matching, L2 between logits, ``kd="l2_logits"``) and scored on the VALIDATION split
    (``ctx.train_fn`` selects and reports on validation; the test split is never seen). Stage 2 starts
    from stage 1's best child; the best child of the whole search is then trained for the task's full
    scratch budget with the same loss and returned.
    Search budget (Config): ``removal_iterations`` x ``removal_rollouts`` children in stage 1,
    ``shrink_iterations`` x ``shrink_rollouts`` children in stage 2, ``child_epochs`` epochs each.
The teacher is the task's ``teacher_deep`` variant (the teacher's widths, two conv blocks per stage:
6 conv layers), trained alone and cached (upstream cost), so there are layers worth removing.
Real: the searched student is a physically smaller network (fewer and narrower layers); its size and
latency are measured. Simulated: nothing.
Deviations: a plain conv chain only (conv-BN-ReLU layers and max-pools, global average pooling, one
linear classifier; no skip connections, so the skip fields are 0); the actions cover the convolutions,
pools and the classifier are kept (the classifier's outputs are the classes). A few children per
iteration and a few iterations (the paper trains policies over hundreds of children); children start
from random initialisation. The moving-average baseline starts at the first iteration's mean reward.
The paper's optional hardware constraints on the reward are left out. AdamW with cosine decay (the
harness recipe) trains the children.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from mcbench.methods.flows.distill import compressed, distil, frozen
from mcbench.methods.protocols import Compressed, DistillationMethod, MethodContext, ModelOutput
from mcbench.methods.registry import register

SHRINK_FRACTIONS = tuple(round(0.1 * i, 1) for i in range(1, 11))   # Sec. 3.3: keep 10% .. 100% of outputs
DESC_DIM = 8                                                        # length of one layer description


# --------------------------------------------------------------------------- architecture as data
@dataclass(frozen=True)
class ConvLayer:
    """One conv-BN-ReLU layer of a plain conv chain; ``pools_after``: 2x2 max-pools that follow it."""

    out_channels: int
    kernel: int = 3
    stride: int = 1
    padding: int = 1
    pools_after: int = 0


@dataclass(frozen=True)
class ChainArch:
    """A plain conv chain: ``layers``, then global average pooling and one linear classifier.

    ``leading_pools``: max-pools before the first conv layer (they follow removed layers)."""

    in_chans: int
    num_classes: int
    layers: tuple[ConvLayer, ...]
    leading_pools: int = 0

    def widths(self) -> list[int]:
        return [layer.out_channels for layer in self.layers]


def _with_pools(layer: ConvLayer, extra: int) -> ConvLayer:
    return ConvLayer(layer.out_channels, layer.kernel, layer.stride, layer.padding, layer.pools_after + extra)


_IGNORED = (nn.BatchNorm2d, nn.ReLU, nn.AdaptiveAvgPool2d, nn.Flatten, nn.Dropout, nn.Identity)


def describe_chain(model: nn.Module) -> ChainArch:
    """Read a plain conv chain (conv-BN-ReLU layers, max-pools, global pooling, one Linear) off ``model``.

    Leaf modules are read in registration order (the forward order of the task CNNs)."""
    layers: list[ConvLayer] = []
    in_chans, pools_first, classifier = None, 0, None
    for name, m in model.named_modules():
        if any(True for _ in m.children()):
            continue
        if isinstance(m, nn.Conv2d):
            if m.groups != 1 or m.dilation != (1, 1):
                raise ValueError(f"ashok2017n2n: {name} is a grouped or dilated convolution; a plain chain is needed")
            in_chans = m.in_channels if in_chans is None else in_chans
            layers.append(ConvLayer(m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]))
        elif isinstance(m, nn.MaxPool2d):
            if layers:
                layers[-1] = _with_pools(layers[-1], 1)
            else:
                pools_first += 1
        elif isinstance(m, nn.Linear):
            if classifier is not None:
                raise ValueError("ashok2017n2n: more than one Linear layer; a conv chain with one classifier is needed")
            classifier = m
        elif not isinstance(m, _IGNORED):
            raise ValueError(f"ashok2017n2n: {name} ({type(m).__name__}) is not part of a plain conv chain")
    if not layers or classifier is None:
        raise ValueError(f"ashok2017n2n: {type(model).__name__} has no conv layer or no linear classifier")
    return ChainArch(in_chans, classifier.out_features, tuple(layers), pools_first)


def layer_descriptions(arch: ChainArch) -> torch.Tensor:
    """(T, DESC_DIM) rows (conv?, linear?, kernel/7, stride/2, padding/3, outputs/max outputs, skip start,
    skip end): Sec. 3.2's (l, k, s, p, n, s_start, s_end), scaled to about [0, 1]."""
    top = max(arch.widths())
    rows = [[1.0, 0.0, layer.kernel / 7, layer.stride / 2, layer.padding / 3, layer.out_channels / top, 0.0, 0.0]
            for layer in arch.layers]
    return torch.tensor(rows, dtype=torch.float32)


def remove_layers(arch: ChainArch, keep: list[bool]) -> ChainArch | None:
    """Stage-1 action: drop the layers with ``keep`` False (their pools stay, moved to the previous kept
    layer, so the spatial sizes stay the teacher's); None when no layer is left (an invalid architecture)."""
    if len(keep) != len(arch.layers):
        raise ValueError(f"{len(keep)} keep actions for {len(arch.layers)} layers")
    layers: list[ConvLayer] = []
    leading = arch.leading_pools
    for layer, k in zip(arch.layers, keep):
        if k:
            layers.append(layer)
        elif layers:
            layers[-1] = _with_pools(layers[-1], layer.pools_after)
        else:
            leading += layer.pools_after
    if not layers:
        return None
    return ChainArch(arch.in_chans, arch.num_classes, tuple(layers), leading)


def shrink_layers(arch: ChainArch, fractions: list[float]) -> ChainArch:
    """Stage-2 action: keep ``max(1, round(f * n))`` of each layer's n outputs."""
    if len(fractions) != len(arch.layers):
        raise ValueError(f"{len(fractions)} shrink fractions for {len(arch.layers)} layers")
    if any(not 0 < f <= 1 for f in fractions):
        raise ValueError(f"shrink fractions must be in (0, 1], got {fractions}")
    layers = tuple(ConvLayer(max(1, round(f * layer.out_channels)), layer.kernel, layer.stride, layer.padding,
                             layer.pools_after) for layer, f in zip(arch.layers, fractions))
    return ChainArch(arch.in_chans, arch.num_classes, layers, arch.leading_pools)


class ChainNet(nn.Module):
    """A ``ChainArch`` as a network: ``body`` (conv-BN-ReLU layers and 2x2 max-pools), pooling, ``fc``."""

    def __init__(self, arch: ChainArch) -> None:
        super().__init__()
        self.arch = arch
        mods: list[nn.Module] = [nn.MaxPool2d(2) for _ in range(arch.leading_pools)]
        c_in = arch.in_chans
        for layer in arch.layers:
            mods += [nn.Conv2d(c_in, layer.out_channels, layer.kernel, layer.stride, layer.padding, bias=False),
                     nn.BatchNorm2d(layer.out_channels), nn.ReLU(inplace=True)]
            mods += [nn.MaxPool2d(2) for _ in range(layer.pools_after)]
            c_in = layer.out_channels
        self.body = nn.Sequential(*mods)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, arch.num_classes)

    def forward(self, x):
        return self.fc(self.flatten(self.gap(self.body(x))))


def check_plain_chain(model: nn.Module, arch: ChainArch, x: torch.Tensor) -> None:
    """Raise unless ``ChainNet(arch)`` with ``model``'s weights (in order) computes ``model``'s function on
    ``x``: leaf modules alone cannot show a skip connection or a reordered forward, the outputs can."""
    import copy

    ref = copy.deepcopy(model).cpu().eval()
    chain = ChainNet(arch).eval()
    src, dst = list(ref.state_dict().values()), chain.state_dict()
    if len(src) != len(dst) or any(a.shape != b.shape for a, b in zip(src, dst.values())):
        raise ValueError(f"ashok2017n2n: {type(model).__name__} is not a plain conv chain (its weights do not "
                         "map onto one)")
    chain.load_state_dict(dict(zip(dst.keys(), src)))
    with torch.no_grad():
        y_ref, y_chain = ref(x.cpu()), chain(x.cpu())
    if not torch.allclose(y_ref, y_chain, rtol=1e-4, atol=1e-5):
        raise ValueError(f"ashok2017n2n: {type(model).__name__} is not a plain conv chain (skip connections or "
                         "another forward order)")


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --------------------------------------------------------------------------- reward, policies, REINFORCE
def n2n_reward(params_student: int, params_teacher: int, acc_student: float, acc_teacher: float) -> float:
    """Sec. 3.4: R = C (2 - C) * Acc_s / Acc_t with C = 1 - params_s / params_t (0 if Acc_t is 0)."""
    c = 1.0 - params_student / params_teacher
    r_a = acc_student / acc_teacher if acc_teacher > 0 else 0.0
    return c * (2.0 - c) * r_a


class RemovalPolicy(nn.Module):
    """Sec. 3.2: a bidirectional LSTM over the layer descriptions, a keep probability per layer."""

    def __init__(self, hidden: int = 32) -> None:
        super().__init__()
        self.lstm = nn.LSTM(DESC_DIM, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, 1)

    def keep_logits(self, desc: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(desc.unsqueeze(0))
        return self.head(h).squeeze(0).squeeze(-1)

    def sample(self, desc: torch.Tensor, gen: torch.Generator) -> list[bool]:
        with torch.no_grad():
            p = torch.sigmoid(self.keep_logits(desc))
        return (torch.rand(p.shape, generator=gen) < p).tolist()

    def log_prob(self, desc: torch.Tensor, keep: list[bool]) -> torch.Tensor:
        a = torch.tensor(keep, dtype=torch.float32)
        return -F.binary_cross_entropy_with_logits(self.keep_logits(desc), a, reduction="sum")


class ShrinkPolicy(nn.Module):
    """Sec. 3.3: a unidirectional LSTM reading (layer description, previous action), a categorical
    choice of the kept fraction of the layer's outputs per layer."""

    def __init__(self, hidden: int = 32, fractions: tuple[float, ...] = SHRINK_FRACTIONS) -> None:
        super().__init__()
        self.fractions = fractions
        self.cell = nn.LSTMCell(DESC_DIM + 1, hidden)
        self.head = nn.Linear(hidden, len(fractions))

    def _run(self, desc: torch.Tensor, actions: list[int] | None, gen: torch.Generator | None):
        h = c = torch.zeros(1, self.cell.hidden_size)
        prev, chosen, total = 1.0, [], torch.zeros(())
        for t in range(desc.shape[0]):
            h, c = self.cell(torch.cat([desc[t], torch.tensor([prev])]).unsqueeze(0), (h, c))
            logp = F.log_softmax(self.head(h).squeeze(0), dim=-1)
            a = (int(torch.multinomial(logp.detach().exp(), 1, generator=gen)) if actions is None else actions[t])
            total = total + logp[a]
            chosen.append(a)
            prev = self.fractions[a]
        return chosen, total

    def sample(self, desc: torch.Tensor, gen: torch.Generator) -> list[int]:
        with torch.no_grad():
            return self._run(desc, None, gen)[0]

    def log_prob(self, desc: torch.Tensor, actions: list[int]) -> torch.Tensor:
        return self._run(desc, actions, None)[1]


class MovingBaseline:
    """b: an exponential moving average of previous rewards (Sec. 3.5); before any, the batch mean."""

    def __init__(self, decay: float) -> None:
        self.decay, self.value = decay, None

    def advantages(self, rewards: list[float]) -> list[float]:
        mean = sum(rewards) / len(rewards)
        b = mean if self.value is None else self.value
        self.value = mean if self.value is None else self.decay * self.value + (1 - self.decay) * mean
        return [r - b for r in rewards]


def reinforce_step(policy: nn.Module, opt: torch.optim.Optimizer, desc: torch.Tensor, actions: list,
                   advantages: list[float]) -> float:
    """One REINFORCE update: minimise -1/m sum_k (R_k - b) log pi(a^k) over m rollouts."""
    loss = -sum(adv * policy.log_prob(desc, a) for a, adv in zip(actions, advantages)) / len(actions)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item()


# --------------------------------------------------------------------------- the method
def logit_l2(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Logit matching: mean over the batch of ||z_s - z_t||^2 / classes (Ba & Caruana's regression)."""
    return F.mse_loss(student, teacher)


@dataclass
class Child:
    arch: ChainArch
    reward: float
    val_top1_pct: float | None
    params: int
    stage: str


@register(family="distillation")
class ashok2017n2n(DistillationMethod):
    arch_roles = ("teacher_deep",)

    @dataclass
    class Config:
        teacher_role: str = "teacher_deep"                        # the network the search compresses
        removal_iterations: Annotated[int, Field(ge=1)] = 2       # policy updates in stage 1
        removal_rollouts: Annotated[int, Field(ge=1)] = 3         # children per update (m) in stage 1
        shrink_iterations: Annotated[int, Field(ge=1)] = 2        # policy updates in stage 2
        shrink_rollouts: Annotated[int, Field(ge=1)] = 3          # children per update in stage 2
        child_epochs: Annotated[int, Field(ge=1)] = 1             # distillation epochs per child
        policy_lr: Annotated[float, Field(gt=0)] = 0.01           # Adam learning rate of both policies
        policy_hidden: Annotated[int, Field(ge=1)] = 32           # LSTM hidden units
        baseline_decay: Annotated[float, Field(ge=0, lt=1)] = 0.5  # EMA decay of the reward baseline
        kd: Literal["l2_logits", "hinton"] = "l2_logits"          # child loss: logit matching or Hinton's KD
        temperature: Annotated[float, Field(gt=0)] = 4.0          # kd="hinton" only
        alpha: Annotated[float, Field(ge=0, le=1)] = 0.5          # kd="hinton" only: weight of the hard term

    def loss(self, student: ModelOutput, targets: torch.Tensor | None, teacher: ModelOutput | None) -> torch.Tensor:
        if teacher is None:
            raise ValueError("ashok2017n2n needs teacher outputs")
        c = self.config
        if c.kd == "l2_logits":
            return logit_l2(student.logits, teacher.logits)
        from mcbench.methods.distillation.hinton2015distilling import kd_loss

        return kd_loss(student.logits, teacher.logits, targets, c.temperature, c.alpha)

    def _train_child(self, ctx: MethodContext, arch: ChainArch, teacher: nn.Module, epochs: int,
                     stage: str) -> tuple[ChainNet, float]:
        child = ChainNet(arch)
        report = distil(ctx, child, self.loss, teacher=teacher, epochs=epochs, stage=stage)
        return child, report.val_top1_acc_pct

    def _score(self, ctx, arch: ChainArch | None, teacher, p_teacher: int, acc_teacher: float, stage: str) -> Child:
        if arch is None:
            return Child(arch, -1.0, None, 0, stage)   # Sec. 3.4: an invalid architecture gets R = -1
        child, acc = self._train_child(ctx, arch, teacher, self.config.child_epochs, f"search:{stage}")
        params = param_count(child)
        return Child(arch, n2n_reward(params, p_teacher, acc, acc_teacher), acc, params, stage)

    def search(self, ctx: MethodContext, teacher: nn.Module) -> tuple[Child, list[Child], float]:
        """Both stages; returns (best child, every child, teacher's validation top-1)."""
        c = self.config
        gen = torch.Generator().manual_seed(ctx.seed)
        torch.manual_seed(ctx.seed)
        arch_t = describe_chain(teacher)
        check_plain_chain(teacher, arch_t, ctx.example_input(2))
        p_teacher, acc_teacher = param_count(teacher), ctx.evaluate(teacher)
        children: list[Child] = []
        policy_seconds = 0.0

        def run_stage(policy, base: ChainArch, iterations: int, rollouts: int, act, stage: str) -> None:
            nonlocal policy_seconds
            desc = layer_descriptions(base)
            opt = torch.optim.Adam(policy.parameters(), lr=c.policy_lr)
            baseline = MovingBaseline(c.baseline_decay)
            for _ in range(iterations):
                actions = [policy.sample(desc, gen) for _ in range(rollouts)]
                batch = [self._score(ctx, act(base, a), teacher, p_teacher, acc_teacher, stage) for a in actions]
                children.extend(batch)
                t0 = time.perf_counter()
                reinforce_step(policy, opt, desc, actions, baseline.advantages([b.reward for b in batch]))
                policy_seconds += time.perf_counter() - t0

        run_stage(RemovalPolicy(c.policy_hidden), arch_t, c.removal_iterations, c.removal_rollouts,
                  remove_layers, "removal")
        valid = [ch for ch in children if ch.arch is not None]
        start = max(valid, key=lambda ch: ch.reward).arch if valid else arch_t
        shrink = ShrinkPolicy(c.policy_hidden)
        run_stage(shrink, start, c.shrink_iterations, c.shrink_rollouts,
                  lambda base, a: shrink_layers(base, [shrink.fractions[i] for i in a]), "shrinkage")
        ctx.ledger.add("search:policy", seconds=policy_seconds)
        best = max((ch for ch in children if ch.arch is not None), key=lambda ch: ch.reward)
        return best, children, acc_teacher

    def apply(self, ctx: MethodContext) -> Compressed:
        teacher = frozen(ctx.load_trained(self.config.teacher_role)).to(ctx.device)
        best, children, acc_teacher = self.search(ctx, teacher)
        student = ChainNet(best.arch)
        report = distil(ctx, student, self.loss, teacher=teacher, stage="final")
        p_teacher = param_count(teacher)
        extra = dict(
            n2n_teacher_role=self.config.teacher_role, n2n_teacher_widths=describe_chain(teacher).widths(),
            n2n_teacher_params=p_teacher, n2n_teacher_val_top1_pct=acc_teacher,
            n2n_student_widths=best.arch.widths(), n2n_student_params=param_count(student),
            n2n_params_ratio_teacher_over_student=p_teacher / param_count(student),
            n2n_best_search_reward=best.reward, n2n_best_stage=best.stage, n2n_children=len(children),
            n2n_search=[dict(stage=ch.stage, widths=ch.arch.widths() if ch.arch else [], reward=round(ch.reward, 4),
                             val_top1_pct=ch.val_top1_pct, params=ch.params) for ch in children])
        return compressed(student, report, note=f"architecture searched by two-stage policy gradients (layer removal, "
                                                f"then shrinkage) from the {self.config.teacher_role} teacher, "
                                                "trained by distillation from it", **extra)
