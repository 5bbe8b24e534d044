"""Pure math of ARDMs on tensors and arrays: no ``nn.Module`` state, no I/O.

Notation (used in every module of the package):

- ``D``: number of variables of one data point (sub-pixels for images, characters for text).
- ``K``: number of classes of each variable (256 for 8-bit images, 27 for text8-style text).
- ``t``: number of already-known variables, 0-indexed, ``t in {0, ..., D-1}``; the step that
  predicts the remaining ``D - t`` variables has weight ``1 / (D - t)``.
- ``sigma``: an order, a permutation of ``{0, ..., D-1}``; variable ``k`` is generated at
  step ``sigma[k]``, so ``known = sigma < t``.
- ``policy``: increasing step boundaries ``[0, pi_1, ..., pi_{B-1}]``; ``D`` is implicit.
- ``budget`` (``B``): number of network calls.
- ``S`` stages and branching factor ``b`` for upscale models.
- ``L`` / ``L_t``: per-step loss components in bits per dim, ``sum(L) = bpd``.
"""
