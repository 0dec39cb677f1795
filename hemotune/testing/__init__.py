"""Test support shipped with hemotune: trainers and helpers that exercise the machinery without training.

``hemotune.testing.synthetic`` holds ``SyntheticCurvesTrainer``, registered as
``synthetic_curves`` (search spaces, tests and docs use it), whose learning
curves are analytic so schedulers, resume and fault tolerance run in seconds.
"""

from __future__ import annotations
