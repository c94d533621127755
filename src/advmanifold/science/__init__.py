"""The science wing: what the papers' experiments are made of, usable without the book.

- :mod:`~advmanifold.science.models`, :mod:`~advmanifold.science.training`: networks
  and their training (plain, adversarial, gradient-aligned);
- :mod:`~advmanifold.science.attacks`: PGD/FGSM in input and latent space;
- :mod:`~advmanifold.science.manifolds`: projectors onto a data manifold (linear/PCA,
  k-NN, a decoder);
- :mod:`~advmanifold.science.alignment`, :mod:`~advmanifold.science.boundaries`,
  :mod:`~advmanifold.science.tangent`: input-gradient alignment, decision-boundary
  geometry and tangent spaces;
- :mod:`~advmanifold.science.verification`: third-party attacks and masking checks;
- :mod:`~advmanifold.science.generative`: the VAE-GAN and its latent attack;
- :mod:`~advmanifold.science.data`, :mod:`~advmanifold.science.glyphs`,
  :mod:`~advmanifold.science.decoders`: MNIST, font prototypes and the FONTS decoder;
- :mod:`~advmanifold.science.compute`: threads and floating-point mode;
- :mod:`~advmanifold.science.checks`: argument checks that name the bad value.

Nothing here imports :mod:`advmanifold.chapters` or :mod:`advmanifold.book`.
"""
