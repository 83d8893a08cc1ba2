"""One evaluation of a trained translator: paired-synthetic scores, baselines, FID/KID of translations.

:func:`evaluate_checkpoint` backs `twingan eval`, the periodic evaluation
during training and the scores of `twingan demo`. Every system is scored the
same way, so the table has one column per system:

* ``trained``: the checkpoint's model (EMA weights);
* ``untrained`` (with ``baselines``): the same architecture freshly
  initialised from the run's seed, at the same resolution;
* ``pixels`` (with ``baselines``): :class:`~twingan.metrics.paired.PixelBaseline`,
  whose "translation" is its input and whose embedding is the raw pixels.

The rows come from the metrics of :mod:`twingan.metrics.registry`, all that apply
unless ``metrics`` names some. Paired-synthetic rows (``photo2anime/l1``,
``.../hair_acc``, both directions) come from ``translation``
(:func:`~twingan.metrics.paired.paired_scores`), ``.../recall@k`` and
``.../pooled_recall@k`` from ``retrieval``. For a model with a style encoder and/or a synthetic ``hair`` attribute, every system
also gets the conditioned rows of :func:`~twingan.metrics.paired.conditioned_scores`
(``ref_hair_acc``, ``ref_pose_l1``, ``ref_pose_acc``, their ``noref_*``
counterparts for the plain translation, ``attr_hair_acc``); other models' results
are unchanged. The untrained baseline has the same parts (its zero-initialised
modulation ignores the condition); the pixel baseline's reference-guided output
is the reference itself (hair right, pose copied), its attribute output the input.
A model with a mapping network (it draws faces from noise) also gets, per synthetic
style its domains were trained on, the generation rows of
:mod:`twingan.metrics.generation_scores` (``STYLE/gen_hair_tv``, ``gen_eye_tv``,
``gen_distinct``, ``gen_realism``, ``gen_walk_max_step``, ``gen_walk_jump``,
``gen_distinct_one_condition``, ``gen_attr_hair_acc``), for the trained and the
untrained model; a one-domain generation model gets only those.
Real folders (``real_folders``: test images per domain, translated; ``target_folders``:
real images per domain the translations are compared with; ``train_folders``: training
reals per domain; ``gender_faces``: UTKFace-named photos) add the rows of
:mod:`twingan.metrics.real_scores`, all at the model resolution: ``SRC2DST/kid_x100``,
``kid_x100_std`` and ``fid``; ``SRC/recon_l1``; ``SRC2DST/style``; ``SRC2DST2SRC/recall@1``;
``SRC2DST/search@1``, ``search_pixels@1``, ``search_inception@1``; and
``P2D2P/gender_kept_men`` / ``gender_kept_women``. Their ``floor`` column holds real
images in the translations' place (a draw from the DST training folder for KID/FID, the real
DST images for style, the held-out photos themselves for gender).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence, Union

import torch

from twingan.checkpoint import load_translator
from twingan.errors import ConfigError, DatasetError, NonFiniteOutputError, quoted
from twingan.metrics.inception import InceptionFeatures, resolve_device, resolve_inception_path
from twingan.metrics.paired import STYLES, PixelBaseline, Translatable
from twingan.metrics.real_sets import RealSets
from twingan.metrics.registry import EvaluationRun, check_metric_names, run_metrics
from twingan.models import TwinGAN

PathLike = Union[str, os.PathLike]

TRAINED, UNTRAINED, PIXELS = "trained", "untrained", "pixels"
LOG_PREFIX = "eval/"
REAL_METRICS = ("fid", "reconstruction", "style", "round_trip", "search", "gender")
"""The metrics of real folders; those but ``reconstruction`` and ``style`` run the Inception network."""
INCEPTION_METRICS = ("fid", "round_trip", "search", "gender")


def evaluate_checkpoint(
    path_or_model: PathLike | TwinGAN,
    synthetic_root: PathLike | None = None,
    real_folders: Mapping[str, PathLike] | None = None,
    inception: PathLike | InceptionFeatures | None = None,
    *,
    target_folders: Mapping[str, PathLike] | None = None,
    train_folders: Mapping[str, PathLike] | None = None,
    gender_faces: Mapping[str, PathLike] | None = None,
    cache_dir: PathLike | None = None,
    config: Mapping[str, Any] | None = None,
    paired: bool = True,
    style_domains: Mapping[str, str] | None = None,
    baselines: bool = False,
    metrics: Sequence[str] | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 32,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a checkpoint (path) or a TwinGAN model; returns a JSON-ready dict.

    ``config`` is the resolved training config (a checkpoint path brings its
    own, ``meta["config"]``); it supplies the synthetic root when
    ``synthetic_root`` is None, the style -> domain mapping when
    ``style_domains`` is None, and the seed of the untrained baseline.
    ``paired=False`` skips the synthetic scores. The real-folder metrics run when
    ``real_folders`` (source domain -> folder) and ``target_folders`` (target
    domain -> folder) are given, for every source/target pair of different
    domains (the style judge and the floor also need ``train_folders``, the gender
    scores ``gender_faces``); ``inception`` is the network file (else
    $TWINGAN_INCEPTION, else the fid extra's TorchScript) or a ready
    :class:`InceptionFeatures`; ``cache_dir`` holds cached features and judges. ``metrics``: the names of the metrics to
    compute (:mod:`twingan.metrics.registry`); None computes every one that
    applies. A model passed in is used on its own device and left in the
    train/eval mode it came in.

    Result keys: checkpoint, domains, resolution, images_seen, systems,
    scores (system -> metric -> value), synthetic (root, test_faces,
    style_domains; or None), fid (pair -> details; or None), real (what the
    real-folder metrics say about their data: judges' accuracies, the gender split).
    """
    if metrics is not None:
        metrics = check_metric_names(metrics)
    wants_real = bool(real_folders) or bool(target_folders) or bool(gender_faces)
    if wants_real and metrics is not None and not set(metrics) & set(REAL_METRICS):
        raise ConfigError(f"--real/--target/--gender-faces are the folders of the metrics {', '.join(REAL_METRICS)}, "
                          "which --metrics leaves out")
    if real_folders or target_folders:
        real_folders, target_folders = _check_fid_request(real_folders, target_folders)
    folders = {"--real": real_folders or {}, "--target": target_folders or {}, "--train": train_folders or {},
               "--gender-faces": gender_faces or {}}
    for option, given in folders.items():
        for domain, folder in given.items():
            if not Path(folder).is_dir():
                raise DatasetError(f"{folder}: folder of {option} {domain}=... not found (or not a folder)")
    uses_inception = metrics is None or bool(set(metrics) & set(INCEPTION_METRICS))
    if wants_real and uses_inception and not isinstance(inception, InceptionFeatures):
        resolve_inception_path(inception)
    if isinstance(path_or_model, TwinGAN):
        model, meta, checkpoint = path_or_model, {"config": config}, None
    else:
        model, meta = load_translator(path_or_model, device=resolve_device(device))
        checkpoint = str(path_or_model)
    train_config = config if config is not None else (meta.get("config") or {})
    released = meta.get("training") or {}  # a release file: no config, a path-free summary of it
    root = _synthetic_root(synthetic_root, train_config, checkpoint) if paired else None
    if root is None and not wants_real:
        raise ConfigError(
            "nothing to evaluate: no synthetic dataset was given or found in the checkpoint's config "
            "(--synthetic ROOT), and no real folders (--real SRC=DIR --target DST=DIR)"
        )
    for option, given in folders.items():
        for domain in given:
            if domain not in model.domains:
                raise ConfigError(f"domain {domain!r} of {option} is not one of this model's {list(model.domains)}")
    real_sets = None
    if wants_real:
        real_sets = RealSets(
            model.resolution, batch_size,
            real={k: Path(v) for k, v in folders["--real"].items()},
            target={k: Path(v) for k, v in folders["--target"].items()},
            train={k: Path(v) for k, v in folders["--train"].items()},
            gender_faces={k: Path(v) for k, v in folders["--gender-faces"].items()},
            inception=inception, device=_device_of(model),
            cache_dir=Path(cache_dir).expanduser() if cache_dir is not None else None, progress=progress,
        )

    result: dict[str, Any] = {
        "checkpoint": checkpoint,
        "domains": list(model.domains),
        "resolution": model.resolution,
        "images_seen": (meta.get("progress") or {}).get("images_seen"),
        "systems": [],
        "scores": {},
        "synthetic": None,
        "fid": None,
        "real": None,
    }
    mapping: dict[str, str] = {}
    if root is not None:
        mapping = _synthetic_mapping(style_domains or released.get("style_domains"), train_config, model)
        result["synthetic"] = {"root": str(root), "test_faces": None, "style_domains": mapping}
        if set(mapping) == set(STYLES) or model.mapping is None:
            _check_style_domains(mapping, model)
        for style, domain in mapping.items():
            _check_domain(domain, model, f"the synthetic {style!r} style")
    with _eval_mode(model), torch.no_grad():
        systems = _systems(model, baselines, int(train_config.get("seed", released.get("seed") or 0)))
        run = EvaluationRun(
            model, systems, batch_size, synthetic_root=root, style_domains=mapping, real_sets=real_sets,
            progress=progress,
        )
        try:
            run_metrics(run, metrics)
        except NonFiniteOutputError as exc:
            raise NonFiniteOutputError(f"{quoted(checkpoint or 'the evaluated model')}: {exc}") from exc
    result.update(systems=list(systems), scores=run.scores, fid=run.fid, real=run.real or None)
    if result["synthetic"] is not None:
        result["synthetic"]["test_faces"] = run.test_faces
    return result


def _synthetic_mapping(
    given: Mapping[str, str] | None, config: Mapping[str, Any], model: TwinGAN
) -> dict[str, str]:
    """Which model domain is each synthetic style: ``given`` (--style-domain), else read from the training config.

    A model that generates may have one style only (``experiment=generate_anime``): its generation scores need no
    paired test set. Any other model needs both styles (:func:`style_domains_from_config` says why not).
    """
    if given:
        return dict(given)
    if model.mapping is not None:
        domains = (config.get("data") or {}).get("domains") or {}
        found = {}
        for style in STYLES:
            readers = [name for name, spec in domains.items() if _reads_synthetic_style(spec, style)]
            if len(readers) == 1 and readers[0] in model.domains:
                found[style] = readers[0]
        if found:
            return found
    return style_domains_from_config(config)


def style_domains_from_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Which model domain is each synthetic style: the domain whose dataset root is ``.../train/<style>``.

    Read from the training config's ``data.domains`` (name -> dataset spec
    with ``root``), so the mapping follows the run, not fixed names.
    """
    domains = (config.get("data") or {}).get("domains") or {}
    mapping = {}
    for style in STYLES:
        readers = [name for name, spec in domains.items() if _reads_synthetic_style(spec, style)]
        if len(readers) != 1:
            roots = ", ".join(f"{name}: {(spec or {}).get('root')}" for name, spec in domains.items()) or "none"
            why = "no domain reads" if not readers else f"domains {readers} all read"
            raise ConfigError(
                f"cannot tell which domain is the synthetic {style!r} style: {why} a synthetic train/{style} "
                f"folder in the training config (data.domains roots: {roots}); name it with --style-domain "
                f"{style}=DOMAIN"
            )
        mapping[style] = readers[0]
    return mapping


def log_record(result: Mapping[str, Any]) -> dict[str, float]:
    """Flat scalars of a result: ``eval/<metric>`` for the trained model, ``eval/<system>/<metric>`` for baselines."""
    record = {}
    for system, scores in result["scores"].items():
        prefix = LOG_PREFIX if system == TRAINED else f"{LOG_PREFIX}{system}/"
        record.update({prefix + metric: float(value) for metric, value in scores.items()})
    return record


NOT_COMPARED_WITH_COPY = ("recon_l1", "kid_std", "kid_x100_std")
"""Scores left out of the comparison with copying the input: copying reconstructs perfectly by definition,
and a standard deviation is no quality."""


def higher_is_better(metric: str) -> bool:
    """False for errors and distances (``l1``, ``*_l1``, ``fid``, ``kid``, ``kid_x100``), True for accuracies
    and recalls."""
    name = metric.rsplit("/", 1)[-1]
    return not (name == "l1" or name.endswith("_l1") or name in ("fid", "kid", "kid_x100"))


@dataclass(frozen=True)
class CopyComparison:
    """One score of the trained model next to the pixel baseline's (copying the input)."""

    metric: str
    trained: float
    copy: float

    @property
    def beats(self) -> bool:
        """Strictly better than copying the input (a tie does not count)."""
        return self.trained > self.copy if higher_is_better(self.metric) else self.trained < self.copy


def compare_with_copy(scores: Mapping[str, Mapping[str, float]]) -> list[CopyComparison]:
    """Every score the trained model and the pixel baseline share, but those in NOT_COMPARED_WITH_COPY."""
    if TRAINED not in scores or PIXELS not in scores:
        return []
    trained, copy = scores[TRAINED], scores[PIXELS]
    return [
        CopyComparison(metric, float(trained[metric]), float(copy[metric]))
        for metric in trained
        if metric in copy and metric.rsplit("/", 1)[-1] not in NOT_COMPARED_WITH_COPY
    ]


def copy_verdict(scores: Mapping[str, Mapping[str, float]]) -> str:
    """One plain sentence: on how many scores the trained model beats copying the input, and which it does not."""
    rows = compare_with_copy(scores)
    if not rows:
        return ""
    losses = [r for r in rows if not r.beats]
    head = f"Against copying the input, the trained model is better on {len(rows) - len(losses)} of {len(rows)} scores"
    if not losses:
        return head + "."
    lost = ", ".join(f"{r.metric} ({r.trained:.3f} vs {r.copy:.3f})" for r in losses)
    return f"{head}; it does NOT beat copying the input on: {lost}."


def format_table(scores: Mapping[str, Mapping[str, float]], digits: int = 4) -> str:
    """Rows metrics, columns systems; '-' where a system has no value for a metric."""
    systems = list(scores)
    metrics = list(dict.fromkeys(m for system in systems for m in scores[system]))
    cells = {s: [f"{scores[s][m]:.{digits}f}" if m in scores[s] else "-" for m in metrics] for s in systems}
    name_width = max([len("metric"), *(len(m) for m in metrics)])
    widths = {s: max([len(s), *(len(c) for c in cells[s])]) for s in systems}
    lines = [f"{'metric':<{name_width}}  " + "  ".join(f"{s:>{widths[s]}}" for s in systems)]
    for row, metric in enumerate(metrics):
        lines.append(f"{metric:<{name_width}}  " + "  ".join(f"{cells[s][row]:>{widths[s]}}" for s in systems))
    return "\n".join(lines)


# ---- pieces ------------------------------------------------------------------------------------


def _reads_synthetic_style(spec: Any, style: str) -> bool:
    root = spec.get("root") if isinstance(spec, Mapping) else None
    return bool(root) and Path(str(root)).parts[-2:] == ("train", style)


def _check_domain(domain: str, model: TwinGAN, what: str) -> None:
    if domain not in model.domains:
        raise ConfigError(f"{what} is mapped to {domain!r}, which is not one of this model's domains "
                          f"{list(model.domains)}")


def _check_style_domains(mapping: Mapping[str, str], model: TwinGAN) -> None:
    if set(mapping) != set(STYLES):
        raise ConfigError(f"the style -> domain mapping needs exactly the styles {list(STYLES)}, got {sorted(mapping)}")
    for style, domain in mapping.items():
        _check_domain(domain, model, f"synthetic style {style!r}")
    if mapping["photo"] == mapping["anime"]:
        raise ConfigError(f"both synthetic styles map to the domain {mapping['photo']!r}; they need two domains")


def _synthetic_root(given: PathLike | None, config: Mapping[str, Any], checkpoint: str | None) -> Path | None:
    if given is not None:
        root = Path(given)
        where = "--synthetic"
    else:
        synthetic = (config.get("data") or {}).get("synthetic")
        if not synthetic or not synthetic.get("root"):
            return None
        root = Path(str(synthetic["root"]))
        where = f"the training config of {checkpoint}" if checkpoint else "the training config"
    if not root.is_dir():
        raise DatasetError(
            f"{root}: synthetic dataset folder not found (from {where}); pass --synthetic ROOT where it lives "
            "(or --no-synthetic to skip the paired scores)"
        )
    return root


def _check_fid_request(
    real: Mapping[str, PathLike] | None, target: Mapping[str, PathLike] | None
) -> tuple[dict[str, Path], dict[str, Path]]:
    if not real or not target:
        missing = "--target DST=DIR" if not target else "--real SRC=DIR"
        raise ConfigError(f"FID/KID of translations needs both real source and real target folders: add {missing}")
    pairs = [(s, d) for s in real for d in target if s != d]
    if not pairs:
        raise ConfigError(
            f"FID/KID compares translations between two domains, but --real {sorted(real)} and --target "
            f"{sorted(target)} name the same one"
        )
    return {k: Path(v) for k, v in real.items()}, {k: Path(v) for k, v in target.items()}


def _systems(model: TwinGAN, baselines: bool, seed: int) -> dict[str, Translatable]:
    systems: dict[str, Translatable] = {TRAINED: model}
    if baselines:
        systems[UNTRAINED] = untrained_like(model, seed)
        systems[PIXELS] = PixelBaseline()
    return systems


def untrained_like(model: TwinGAN, seed: int) -> TwinGAN:
    """A freshly initialised model of ``model``'s architecture and growth state, in eval mode.

    Initialised under a forked CPU generator, so the caller's (training) random state is untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = TwinGAN(model.cfg)
    fresh.set_progress(model.resolution, model.alpha)
    return fresh.to(_device_of(model)).eval()


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _device_of(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device
