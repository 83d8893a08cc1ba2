"""The demo's HTML report: translations both ways, cross-domain neighbours, paired-test scores."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch
from torchvision.utils import make_grid

from twingan.data.image_io import save_image, tensor_to_pil, upscale_for_viewing
from twingan.metrics.evaluate import compare_with_copy, copy_verdict
from twingan.utils.atomic import atomic_write_text


def save_rows(rows: Sequence[torch.Tensor], path: Path) -> Path:
    """Each row a (n, 3, R, R) batch; saved as one PNG with tiles upscaled for viewing."""
    n = rows[0].shape[0]
    grid = make_grid(upscale_for_viewing(torch.cat(rows).clamp(-1, 1)), nrow=n, padding=2, pad_value=1.0)
    return save_image(tensor_to_pil(grid), path)


def neighbour_rows(
    queries: torch.Tensor, gallery: torch.Tensor, q_emb: np.ndarray, g_emb: np.ndarray, k: int
) -> tuple[list[torch.Tensor], list[list[tuple[int, float]]]]:
    """For each query: itself then its k nearest gallery images by cosine; also (index, score) lists."""
    sims = q_emb @ g_emb.T
    rows, found = [], []
    for i in range(len(queries)):
        order = np.argsort(-sims[i])[:k]
        rows.append(torch.cat([queries[i:i + 1], gallery[order]]))
        found.append([(int(j), float(sims[i, j])) for j in order])
    return rows, found


def write_report(
    out: Path,
    scores: Mapping[str, Mapping[str, float]],
    images: Mapping[str, str],
    neighbours: Sequence[list[tuple[int, float]]],
    info: Mapping[str, str],
) -> Path:
    """Write report.html (atomically) referring to the PNGs in ``images`` (paths relative to ``out``)."""
    systems = list(scores)
    metrics = list(next(iter(scores.values())))
    head = "".join(f"<th>{html.escape(s)}</th>" for s in systems)
    body = "".join(
        "<tr><td>" + html.escape(m) + "</td>" + "".join(f"<td>{scores[s][m]:.3f}</td>" for s in systems) + "</tr>"
        for m in metrics
    )
    nn_lines = "".join(
        f"<li>query {q}: " + ", ".join(
            (f"<b>#{j} ({s:.3f})</b>" if j == q else f"#{j} ({s:.3f})") for j, s in found
        ) + "</li>"
        for q, found in enumerate(neighbours)
    )
    verdict = copy_verdict(scores)
    verdict_class = " fails" if any(not row.beats for row in compare_with_copy(scores)) else ""
    info_lines = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in info.items())
    verdict = html.escape(verdict)
    figures = "".join(
        f"<h2>{html.escape(title)}</h2><img src=\"{html.escape(src)}\" alt=\"{html.escape(title)}\">"
        for title, src in images.items()
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>twingan demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #bbb;padding:4px 10px;text-align:right}}td:first-child{{text-align:left}}img{{max-width:100%}}
.verdict{{font-weight:bold}}.verdict.fails{{color:#b00}}</style>
</head><body>
<h1>twingan demo</h1>
<ul>{info_lines}</ul>
<h2>Scores on the paired synthetic test set</h2>
<p>l1: mean absolute pixel error (0..1) of the translation against the true rendering in the other style (lower is
better). recon_l1: the same for the reconstruction of a face through its own domain. style: share of translations
that an independent photo-vs-anime classifier, fitted on the training pictures, assigns to the target style (copying
the input scores about 0). hair_acc: share of translations whose hair colour is the source's (higher is better).
recall@k: share of faces whose twin in the other style is among the k nearest by embedding cosine (higher is better).
"untrained" is the same architecture before training; "pixels" copies the input as its translation and searches on
raw pixels: a model that does not beat it has not learned the translation.</p>
<p class="verdict{verdict_class}">{verdict}</p>
<table><tr><th>metric</th>{head}</tr>{body}</table>
{figures}
<h2>Nearest anime faces of each photo (index, cosine); bold = the photo's own twin</h2>
<ol start="0">{nn_lines}</ol>
</body></html>
"""
    path = out / "report.html"
    atomic_write_text(path, page)
    return path
