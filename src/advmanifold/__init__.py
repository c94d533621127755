"""advmanifold: models, attacks and manifold projectors for the companion book on
adversarial examples and data manifolds (Stutz et al. 2019; Geyer et al. 2023)."""

__version__ = "0.1.0"
