"""Classifiers used in the book.

- :class:`ConvNet`: the classifier of Stutz et al. on FONTS and MNIST: three convolutions
  (kernel 4, stride 2, padding 1; 16 → 32 → 64 channels; batch norm; ReLU), flatten
  (64·3·3 = 576), Linear(100), ReLU, Linear(10).
- :class:`MLP`: the PMNIST model of Geyer et al.: 784 → 1568 → 1568 → 10 with ReLU.
"""
from __future__ import annotations

import torch
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
        layers += [nn.Conv2d(groups * c_in, groups * c_out, 4, 2, 1, groups=groups),
                   nn.BatchNorm2d(groups * c_out), nn.ReLU()]
    return nn.Sequential(*layers)


class ConvNet(nn.Module):
    def __init__(self, n_classes: int = 10, hidden: int = 100):
        super().__init__()
        self.features = conv_stack()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * 3 * 3, hidden), nn.ReLU(), nn.Linear(hidden, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.view(-1, 1, 28, 28)))


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
    out = torch.cat([model(x[i:i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2000) -> float:
    return (predict(model, x, batch_size) == y).float().mean().item()
