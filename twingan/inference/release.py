"""Release files: what inference needs from a training checkpoint, and a model card beside it.

A release is a twingan checkpoint (the one format of :mod:`twingan.checkpoint`,
``kind: "release"`` in its metadata) that holds only the EMA translator: its
weights and buffers (including the per-domain latent statistics the embedding
uses) under ``ema.``, its ``model_config``, the resolution and fade-in it was
saved at, each domain's face profile (:mod:`twingan.faces.profiles`) and a
path-free summary of what it was trained on. Optimiser states,
discriminators, RNG states, the resolved training config and every local path
(data roots, run folder) stay behind. Every command and API that loads a
checkpoint for inference loads a release the same way; only resuming training
needs the training checkpoint.

The EMA tensors are copied byte for byte from the training checkpoint, so a
release translates and embeds exactly as its checkpoint does.

The model card (``<release stem>.md``) says what the model is (domains,
resolution, conditioning), what it was trained on, its `twingan eval` scores on
the synthetic paired test set when that set is at hand, and how to use it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Union

from twingan import __version__
from twingan.checkpoint import (
    FORMAT_VERSION,
    file_sha256,
    load_tensors,
    load_translator,
    read_meta,
    save_checkpoint,
)
from twingan.errors import ConfigError
from twingan.faces.profiles import META_KEY as PROFILES_KEY
from twingan.faces.profiles import checkpoint_profiles
from twingan.metrics.evaluate import copy_verdict, evaluate_checkpoint, format_table, style_domains_from_config
from twingan.utils.atomic import atomic_write_text

PathLike = Union[str, os.PathLike]

RELEASE_KIND = "release"
TRAINING_KIND = "training"
WEIGHTS_PREFIX = "ema."
NO_TEST_SET = "no synthetic paired test set at hand"
NOT_EVALUATED = "scoring switched off by --no-eval"


@dataclass
class ReleaseResult:
    path: Path
    card: Path
    size: int
    checkpoint_size: int
    sha256: str
    scores: dict[str, dict[str, float]] | None
    unscored_reason: str | None = None

    def size_line(self) -> str:
        """The release's size against the training checkpoint's."""
        share = 100.0 * self.size / self.checkpoint_size if self.checkpoint_size else float("nan")
        return (f"{_megabytes(self.size)} (the training checkpoint is {_megabytes(self.checkpoint_size)}: "
                f"{share:.1f} % of it)")


def default_release_path(checkpoint: PathLike) -> Path:
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(f"{checkpoint.stem}.release.safetensors")


def card_path(release: PathLike) -> Path:
    """The model card beside a release: same name, ``.md``."""
    return Path(release).with_suffix(".md")


def training_summary(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint (training or release) was trained on, without any local path.

    Keys: ``experiment``, ``seed``, ``images_seen``, ``resolution``, ``domains``
    (name -> dataset ``kind``, ``split`` and, for the built-in synthetic faces,
    ``synthetic_style``), ``synthetic`` (the generator's settings, or None),
    ``style_domains`` (synthetic style -> domain, or None) and ``synthetic_only``.
    A release carries this summary; a training checkpoint's is derived from its config.
    """
    if meta.get("kind") == RELEASE_KIND:
        return dict(meta.get("training") or {})
    config = meta.get("config") or {}
    data = config.get("data") or {}
    progress = meta.get("progress") or {}
    try:
        styles: dict[str, str] | None = style_domains_from_config(config)
    except ConfigError:  # not a run on the synthetic faces (or not on both styles)
        styles = None
    style_of = {domain: style for style, domain in (styles or {}).items()}
    domains = {
        name: {"kind": (spec or {}).get("kind"), "split": (spec or {}).get("split"), "synthetic_style": style_of.get(name)}
        for name, spec in (data.get("domains") or {}).items()
    }
    synthetic = data.get("synthetic")
    synthetic = {k: synthetic[k] for k in ("n_train", "n_test", "size", "seed") if k in synthetic} if synthetic else None
    return {
        "experiment": config.get("name"),
        "seed": config.get("seed"),
        "images_seen": progress.get("images_seen"),
        "resolution": progress.get("resolution"),
        "domains": domains,
        "synthetic": synthetic,
        "style_domains": styles,
        "synthetic_only": bool(domains) and all(d["synthetic_style"] for d in domains.values()),
    }


def describe_training(summary: Mapping[str, Any]) -> str:
    """One sentence on the training data, e.g. for the web demo's header and the model card."""
    domains = summary.get("domains") or {}
    if not domains:
        return "The checkpoint does not say what it was trained on."
    seen = summary.get("images_seen")
    amount = f" for {seen:,} images" if isinstance(seen, int) else ""
    if summary.get("synthetic_only"):
        parts = ", ".join(f"{name} = {d['synthetic_style']} style" for name, d in domains.items())
        return (f"Trained{amount} on the built-in synthetic faces only ({parts}): drawn faces, not photos, so it "
                "gives no meaningful avatar for a real photo; try it on the synthetic example faces.")
    parts = []
    for name, d in domains.items():
        if d.get("synthetic_style"):
            parts.append(f"{name}: the built-in synthetic faces ({d['synthetic_style']} style)")
        else:
            split = f", {d['split']} split" if d.get("split") else ""
            parts.append(f"{name}: a {d.get('kind') or 'folder'} dataset{split}")
    return f"Trained{amount} on " + "; ".join(parts) + "."


def write_release(
    checkpoint: PathLike,
    out: PathLike | None = None,
    *,
    synthetic_root: PathLike | None = None,
    evaluate: bool = True,
    device: str = "cpu",
) -> ReleaseResult:
    """Write the release file of a training ``checkpoint`` and its model card; returns sizes and scores.

    ``evaluate``: score the EMA translator with `twingan eval`'s synthetic paired test (and its untrained
    and pixel baselines) for the card, on ``synthetic_root`` or the test set named in the training config
    when it exists; without one, the card says how to score it. The release file and the card are each
    written atomically.
    """
    checkpoint = Path(checkpoint)
    meta = read_meta(checkpoint)
    if meta.get("kind") == RELEASE_KIND:
        raise ConfigError(f"{checkpoint} is a release file already; export releases from a training checkpoint")
    out = Path(out) if out is not None else default_release_path(checkpoint)
    if out.resolve() == checkpoint.resolve():
        raise ConfigError(f"--out {out} is the checkpoint itself; choose another file name")
    model, _ = load_translator(checkpoint, device="cpu", weights="ema")  # checks the weights fit the architecture
    tensors = {WEIGHTS_PREFIX + k: v for k, v in load_tensors(checkpoint, prefix=WEIGHTS_PREFIX).items()}
    summary = training_summary(meta)
    scores = _scores(checkpoint, model, meta, summary, synthetic_root, evaluate, device)
    progress = meta.get("progress") or {}
    release_meta = {
        "kind": RELEASE_KIND,
        "twingan_version": __version__,
        "model_config": meta["model_config"],
        PROFILES_KEY: checkpoint_profiles(meta, model.domains),
        "progress": {k: progress[k] for k in ("resolution", "alpha", "images_seen") if k in progress},
        "training": summary,
        "source": {"kind": meta.get("kind"), "sha256": file_sha256(checkpoint),
                   "twingan_version": meta.get("twingan_version")},
        "scores": scores,
    }
    save_checkpoint(out, tensors, release_meta)
    sha = file_sha256(out)
    card = card_path(out)
    reason = None if scores else (NOT_EVALUATED if not evaluate else NO_TEST_SET)
    atomic_write_text(card, model_card(out, release_meta, sha, out.stat().st_size, reason or ""))
    return ReleaseResult(out, card, out.stat().st_size, checkpoint.stat().st_size, sha, scores, reason)


def _scores(
    checkpoint: Path, model: Any, meta: Mapping[str, Any], summary: Mapping[str, Any],
    synthetic_root: PathLike | None, evaluate: bool, device: str,
) -> dict[str, dict[str, float]] | None:
    if not evaluate:
        return None
    root = synthetic_root
    if root is None:
        configured = ((meta.get("config") or {}).get("data") or {}).get("synthetic") or {}
        if not configured.get("root") or not Path(str(configured["root"])).is_dir():
            return None
        root = configured["root"]
    if not summary.get("style_domains"):
        return None
    result = evaluate_checkpoint(
        model.to(device), synthetic_root=root, config={"seed": summary.get("seed") or 0},
        style_domains=summary["style_domains"], baselines=True, device=device,
    )
    return result["scores"]


def model_card(
    release: PathLike, meta: Mapping[str, Any], sha256: str, size: int, unscored_reason: str = "") -> str:
    """The markdown model card of a release file; ``unscored_reason`` says why a card without scores has none."""
    release = Path(release)
    cfg = meta["model_config"]
    summary = meta.get("training") or {}
    progress = meta.get("progress") or {}
    res = progress.get("resolution", cfg.get("resolution"))
    domains = list(cfg.get("domains", ()))
    extras = []
    if cfg.get("style_dim"):
        extras.append(f"reference-guided translation (style code of {cfg['style_dim']} dimensions)")
    if cfg.get("attributes"):
        groups = "; ".join(f"{name}: {', '.join(values)}" for name, values in cfg["attributes"].items())
        extras.append(f"attributes ({groups})")
    if cfg.get("noise_dim"):
        extras.append("generation from noise (`twingan generate`)")
    src, dst = (domains[0], domains[1]) if len(domains) > 1 else (domains[0], domains[0])
    lines = [
        f"# {release.stem}",
        "",
        f"A twingan {__version__} release file (checkpoint format {FORMAT_VERSION}, `kind: release`): the EMA "
        "translator only, in safetensors with its architecture as JSON.",
        "",
        f"- **Domains (face profile):** {', '.join(f'{d} ({p})' for d, p in checkpoint_profiles(meta, domains).items())}",
        f"- **Resolution:** {res}x{res} px",
        f"- **Also:** {', '.join(extras)}" if extras else "- **Also:** plain translation only",
        f"- **Training:** {describe_training(summary)}",
        f"- **Experiment:** {summary.get('experiment')}, seed {summary.get('seed')}",
        f"- **File:** `{release.name}`, {_megabytes(size)}, sha256 `{sha256}`",
        "",
        "## Scores",
        "",
    ]
    scores = meta.get("scores")
    if scores:
        lines += [
            "`twingan eval` on the built-in synthetic paired test set: the trained model, the untrained model of "
            "the same architecture and the pixel baseline (copying the input). `l1` is the pixel error against "
            "the true rendering in the other style (lower is better); accuracies and recalls: higher is better.",
            "",
            "```",
            format_table(scores),
            "```",
            "",
        ]
        verdict = copy_verdict(scores)
        if verdict:
            lines += [verdict, ""]
    else:
        lines += [
            f"Not scored when the release was made ({unscored_reason or NO_TEST_SET}). "
            f"`twingan eval {release.name} --synthetic ROOT --baselines` scores it on the synthetic faces; "
            "`--real SRC=DIR --target DST=DIR` adds FID/KID on real images.",
            "",
        ]
    lines += [
        "## Use",
        "",
        "```python",
        "import twingan",
        f't = twingan.load("{release.name}")',
        f't.translate_photo("selfie.jpg", to="{dst}").avatar.save("avatar.png")',
        "```",
        "",
        "```bash",
        f"twingan translate {release.name} photos/ --to {dst} --out avatars --paste-back",
        f"twingan serve {release.name}",
        "```",
        "",
        f"The source domain of `--to {dst}` is {src}. Inputs are aligned face crops at {res} px (pictures of "
        "a domain with the `photo` face profile are face-detected and aligned by the commands above).",
        "",
    ]
    return "\n".join(lines)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.2f} MB"
