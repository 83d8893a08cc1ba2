"""Metrics by name: what `twingan eval --metrics`, the demo and the evaluation during training choose from.

Modelled on StyleGAN2-ADA's ``metric_main``: each metric is a function of one
:class:`EvaluationRun` (the systems to score and what they are scored on),
registered under its name with the condition under which it applies. A run asks
for some names (:func:`check_metric_names` turns an unknown one into a one-line
error listing the valid ones) or for all of them, which skips those that do not
apply (no paired test set, no mapping network, no FID folders).

- ``translation``: paired-synthetic translation error, style and hair colour (:func:`~twingan.metrics.paired.paired_scores`);
- ``retrieval``: cross-domain recall@k of each embedding kind (:func:`~twingan.metrics.retrieval.embedding_recall`);
- ``conditioned``: reference-guided and attribute scores, for models with those parts
  (:func:`~twingan.metrics.paired.conditioned_scores`);
- ``generation``: faces drawn from noise, per synthetic style (:mod:`twingan.metrics.generation_scores`);
- ``fid``: KID x100 ± std and FID of translations of real folders, with the floor
  (:func:`~twingan.metrics.real_scores.kid_fid_rows`);
- ``reconstruction``, ``style``, ``round_trip``, ``search``, ``gender``: the other scores of
  translations of real folders (:mod:`twingan.metrics.real_scores`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from twingan.errors import ConfigError
from twingan.metrics.generation_scores import generation_scores
from twingan.metrics.paired import (
    STYLES,
    PairedTestSet,
    Translatable,
    conditioned_scores,
    conditioned_view,
    conditioning_parts,
    load_paired_test_set,
    paired_scores,
)
from twingan.metrics.real_scores import (
    gender_rows,
    kid_fid_rows,
    reconstruction_rows,
    round_trip_rows,
    search_rows,
    style_rows,
)
from twingan.metrics.real_sets import RealSets
from twingan.metrics.retrieval import embedding_recall
from twingan.models import TwinGAN


@dataclass
class EvaluationRun:
    """The systems a run scores and what it scores them on; metrics add to ``scores`` (system -> name -> value)
    and ``fid`` (pair -> details) and ``real`` (what the real-folder metrics report about their data).
    ``style_domains`` maps the synthetic styles to the model's domains; ``real_sets`` holds the real folders."""

    model: TwinGAN
    systems: dict[str, Translatable]
    batch_size: int
    synthetic_root: Path | None = None
    style_domains: dict[str, str] = field(default_factory=dict)
    real_sets: RealSets | None = None
    progress: bool = False
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    fid: dict[str, dict[str, Any]] | None = None
    real: dict[str, Any] = field(default_factory=dict)
    _test_set: PairedTestSet | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.scores = {name: {} for name in self.systems}

    @property
    def has_paired_test_set(self) -> bool:
        """Both synthetic styles are mapped to domains, so translations can be checked against their twins."""
        return self.synthetic_root is not None and set(self.style_domains) == set(STYLES)

    @property
    def test_set(self) -> PairedTestSet:
        """The paired test faces at the model's resolution, loaded on first use."""
        if self._test_set is None:
            self._test_set = load_paired_test_set(self.synthetic_root, self.model.resolution)
        return self._test_set

    @property
    def test_faces(self) -> int | None:
        """How many paired test faces were scored; None when no metric used them."""
        return len(self._test_set.params) if self._test_set is not None else None

    def add(self, system: str, scores: dict[str, float]) -> None:
        self.scores[system].update(scores)


@dataclass(frozen=True)
class Metric:
    """A registered metric: ``compute`` adds its scores to the run; it applies when ``applies(run)``."""

    name: str
    needs: str
    applies: Callable[[EvaluationRun], bool]
    compute: Callable[[EvaluationRun], None]


METRICS: dict[str, Metric] = {}


def register_metric(name: str, needs: str, applies: Callable[[EvaluationRun], bool]):
    """Register the decorated function under ``name``; ``needs`` says, for the error, when it applies."""
    def register(compute: Callable[[EvaluationRun], None]) -> Callable[[EvaluationRun], None]:
        if name in METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        METRICS[name] = Metric(name, needs, applies, compute)
        return compute

    return register


def metric_names() -> list[str]:
    """Every registered metric, in the order a run computes them."""
    return list(METRICS)


def check_metric_names(names: Iterable[str]) -> list[str]:
    """``names`` in registry order; ConfigError naming the valid ones when one is unknown."""
    names = list(names)
    unknown = [name for name in names if name not in METRICS]
    if unknown:
        raise ConfigError(f"unknown metric {', '.join(map(repr, unknown))}; valid metrics: {', '.join(METRICS)}")
    return [name for name in METRICS if name in names]


def run_metrics(run: EvaluationRun, names: Iterable[str] | None = None) -> None:
    """Compute the metrics ``names`` (all that apply when None) into ``run``; a named one that does not apply
    is a ConfigError."""
    for name in check_metric_names(names) if names is not None else metric_names():
        metric = METRICS[name]
        if metric.applies(run):
            metric.compute(run)
        elif names is not None:
            raise ConfigError(f"metric {name!r} does not apply to this evaluation: it needs {metric.needs}")


@register_metric("translation", "the synthetic paired test set (--synthetic)", lambda run: run.has_paired_test_set)
def _translation(run: EvaluationRun) -> None:
    for name, system in run.systems.items():
        run.add(name, paired_scores(system, run.test_set, run.style_domains, batch_size=run.batch_size))


@register_metric("retrieval", "the synthetic paired test set (--synthetic)", lambda run: run.has_paired_test_set)
def _retrieval(run: EvaluationRun) -> None:
    for name, system in run.systems.items():
        run.add(name, embedding_recall(system, run.test_set, run.style_domains, batch_size=run.batch_size))


@register_metric(
    "conditioned", "the synthetic paired test set and a model with a style encoder or a synthetic hair attribute",
    lambda run: run.has_paired_test_set and bool(conditioning_parts(run.model)),
)
def _conditioned(run: EvaluationRun) -> None:
    parts = conditioning_parts(run.model)
    for name, system in run.systems.items():
        run.add(name, conditioned_scores(conditioned_view(system), run.test_set, run.style_domains, parts,
                                         batch_size=run.batch_size))


@register_metric(
    "generation", "the synthetic dataset and a model that draws faces from noise (model.noise_dim > 0)",
    lambda run: run.synthetic_root is not None and run.model.mapping is not None,
)
def _generation(run: EvaluationRun) -> None:
    for name, system in run.systems.items():
        if isinstance(system, TwinGAN):
            for style, domain in run.style_domains.items():
                scores = generation_scores(system, run.synthetic_root, domain, style, batch_size=run.batch_size)
                run.add(name, {f"{style}/{key}": value for key, value in scores.items()})


def _has_pairs(run: EvaluationRun) -> bool:
    return run.real_sets is not None and bool(run.real_sets.pairs)


@register_metric("fid", "folders of real images (--real SRC=DIR --target DST=DIR)", _has_pairs)
def _fid(run: EvaluationRun) -> None:
    run.fid = kid_fid_rows(run.real_sets, run.systems, run.scores)


@register_metric("reconstruction", "folders of real images to reconstruct (--real DOMAIN=DIR)",
                 lambda run: run.real_sets is not None and bool(run.real_sets.real))
def _reconstruction(run: EvaluationRun) -> None:
    reconstruction_rows(run.real_sets, run.systems, run.scores)


@register_metric(
    "style", "real folders (--real SRC=DIR --target DST=DIR) and both domains' training reals (--train DOMAIN=DIR)",
    lambda run: _has_pairs(run) and all(d in run.real_sets.train for pair in run.real_sets.pairs for d in pair),
)
def _style(run: EvaluationRun) -> None:
    run.real["style_judge_test_accuracy"] = style_rows(run.real_sets, run.systems, run.scores)


@register_metric("round_trip", "folders of real images (--real SRC=DIR --target DST=DIR)", _has_pairs)
def _round_trip(run: EvaluationRun) -> None:
    round_trip_rows(run.real_sets, run.systems, run.scores)


@register_metric("search", "folders of real images (--real SRC=DIR --target DST=DIR)", _has_pairs)
def _search(run: EvaluationRun) -> None:
    search_rows(run.real_sets, run.systems, run.scores)


@register_metric("gender", "UTKFace-named faces (--gender-faces DOMAIN=DIR)",
                 lambda run: run.real_sets is not None and bool(run.real_sets.gender_faces))
def _gender(run: EvaluationRun) -> None:
    run.real["gender"] = gender_rows(run.real_sets, run.systems, list(run.model.domains), run.scores)
