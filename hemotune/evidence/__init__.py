"""Evidence that a configuration is really better: statistics over seeds and test images.

Pure numbers (numpy, ``scipy.stats``), no Ray, no MLflow, no trainers:

* ``stats``: t intervals over seeds, paired differences, seeded bootstraps, plain verdicts,
  the identical-seeds check.
* ``evaluation``: the ``evaluation.json`` document of ``hemotune evaluate``.
* ``ablation``: the ``ablation.json`` document of a 2x2 ablation grid (synergy with its interval).
* ``markdown``: both documents as Markdown (``evaluation.md``, ``ablation.md``; also printed).
"""

from __future__ import annotations

from hemotune.evidence.ablation import analyse_ablation
from hemotune.evidence.evaluation import ImageScores, SeedResult, analyse_evaluation
from hemotune.evidence.markdown import ablation_markdown, evaluation_markdown
from hemotune.evidence.stats import (
    Estimate,
    bootstrap_mean,
    identical_seed_pairs,
    paired_bootstrap,
    paired_bootstrap_statistic,
    paired_difference,
    t_interval,
    verdict,
)

__all__ = [
    "Estimate",
    "ImageScores",
    "SeedResult",
    "ablation_markdown",
    "analyse_ablation",
    "analyse_evaluation",
    "bootstrap_mean",
    "evaluation_markdown",
    "identical_seed_pairs",
    "paired_bootstrap",
    "paired_bootstrap_statistic",
    "paired_difference",
    "t_interval",
    "verdict",
]
