"""Classifiers used in the book.

- :class:`ConvNet`: the classifier of Stutz et al. on FONTS and MNIST: three
  convolutions (kernel 4, stride 2, padding 1; 16 → 32 → 64 channels; batch norm;
  ReLU), flatten (64·3·3 = 576), Linear(100), ReLU, Linear(10).
- :class:`MLP`: the PMNIST model of Geyer et al.: 784 → 1568 → 1568 → 10 with ReLU.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn


def conv_stack(channels=(1, 16, 32, 64), groups: int = 1) -> nn.Sequential:
    """Convolutions k4 s2 p1 with batch norm and ReLU: 28 → 14 → 7 → 3.

    ``groups > 1`` builds that many independent stacks side by side as grouped
    convolutions (channels group-major: stack g owns channels [g·c, (g+1)·c)),
    e.g. the discriminators of ten class-specific VAE-GANs trained at once.
    """
    if int(groups) != groups or groups < 1:
        raise ValueError(f"groups must be an integer >= 1, got {groups!r}")
    layers = []
    for c_in, c_out in zip(channels[:-1], channels[1:]):
        layers += [
            nn.Conv2d(groups * c_in, groups * c_out, 4, 2, 1, groups=groups),
            nn.BatchNorm2d(groups * c_out),
            nn.ReLU(),
        ]
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    def __init__(self, n_classes: int = 10, hidden: int = 100):
        super().__init__()
        self.features = conv_stack()
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 3 * 3, hidden),
            nn.ReLU(),
            nn.Linear(hidden, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(-1, 1, 28, 28)))


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """The block sees ``model`` in eval mode with no parameter requiring a gradient
    (attacks need ∇ₓ only); afterwards each flag and the mode are what they were."""
    flags = [p.requires_grad for p in model.parameters()]
    was_training = model.training
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


class _InputGradConv(torch.autograd.Function):
    """conv2d(x, w, b) whose input gradient is col2im(wᵀ · g) (``F.fold``).

    For a single input channel, oneDNN's backward-data kernel is about 5× slower
    than this (measured on the ConvNet's first layer, 16 → 1 channels at 28 × 28).
    The weights of an attack view never need a gradient, so none is computed."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride: int, padding: int):
        ctx.save_for_backward(weight)
        ctx.geometry = (x.shape[-2:], stride, padding)
        return F.conv2d(x, weight, bias, stride, padding)

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        size, stride, padding = ctx.geometry
        columns = torch.matmul(weight.flatten(1).t(), grad_out.flatten(2))
        grad_x = F.fold(
            columns, size, weight.shape[-2:], padding=padding, stride=stride
        )
        return grad_x, None, None, None, None


class FoldedConvNet(nn.Module):
    """A trained :class:`ConvNet` in eval mode with each batch norm folded into its
    convolution, for input-gradient attacks: BN(conv(x)) = conv'(x) with
    w' = w · γ/√(σ² + ε) and b' = (b − μ) · γ/√(σ² + ε) + β (running statistics).

    Equal to the network up to float rounding (about 1e-7 relative); holds buffers,
    not parameters, so nothing in it asks for a weight gradient, and its first layer
    computes its input gradient with :class:`_InputGradConv`."""

    def __init__(self, net: "ConvNet"):
        super().__init__()
        convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
        norms = [m for m in net.features if isinstance(m, nn.BatchNorm2d)]
        linears = [m for m in net.head if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for i, (conv, bn) in enumerate(zip(convs, norms)):
                scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                self.register_buffer(f"w{i}", conv.weight * scale.view(-1, 1, 1, 1))
                self.register_buffer(f"b{i}", (conv.bias - bn.running_mean) * scale)
                getattr(self, f"b{i}").add_(bn.bias)
            for i, lin in enumerate(linears):
                self.register_buffer(f"fc{i}_w", lin.weight.detach().clone())
                self.register_buffer(f"fc{i}_b", lin.bias.detach().clone())
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.view(-1, 1, 28, 28)
        h = _InputGradConv.apply(h, self.w0, self.b0, 2, 1).relu()
        h = F.conv2d(h, self.w1, self.b1, 2, 1).relu()
        h = F.conv2d(h, self.w2, self.b2, 2, 1).relu()
        h = F.linear(h.flatten(1), self.fc0_w, self.fc0_b).relu()
        return F.linear(h, self.fc1_w, self.fc1_b)


def freeze(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with no parameter requiring a gradient, for good (a
    trained model that is only evaluated and attacked); :func:`frozen` for a while."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


_FOLDING = [True]


@contextlib.contextmanager
def attack_views(enabled: bool) -> Iterator[None]:
    """Switch the attacks' fast paths off (every model attacked as it is, the
    decoder's grid by ``F.affine_grid``) or on within the block: :func:`attack_view`,
    and the closed-form grid of
    :func:`advmanifold.science.attacks.onmanifold_examples`. The benchmarks time and
    compare both ways in one run."""
    _FOLDING.append(bool(enabled))
    try:
        yield
    finally:
        _FOLDING.pop()


def attack_views_on() -> bool:
    """Whether attack views (and the other fast paths of attacks) are on: the
    innermost :func:`attack_views` block says, on by default."""
    return _FOLDING[-1]


def attack_view(model: nn.Module) -> nn.Module:
    """What an input-gradient attack should run through: for a :class:`ConvNet` in
    eval mode its :class:`FoldedConvNet` (same function, about 1.8× faster ∇ₓ on the
    CPU, see the benchmarks appendix); for a module with an ``attack_view()`` method
    (a wrapper around a classifier) what that returns; otherwise ``model`` itself.
    Call it inside :func:`frozen`, after the weights' last update."""
    if not _FOLDING[-1]:
        return model
    if isinstance(model, ConvNet) and not model.training:
        return FoldedConvNet(model)
    own = getattr(model, "attack_view", None)
    return own() if callable(own) else model


class MLP(nn.Module):
    def __init__(self, sizes=(784, 1568, 1568, 10)):
        super().__init__()
        layers = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(nn.Flatten(), *layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 2000) -> torch.Tensor:
    """Predicted labels, in evaluation mode, batched."""
    was_training = model.training
    model.eval()
    out = torch.cat(
        [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    )
    model.train(was_training)
    return out


def accuracy(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000
) -> float:
    return (predict(model, x, batch_size) == y).float().mean().item()
