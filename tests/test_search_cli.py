"""Search for users: `twingan embed` (resume, bad files, faces), `twingan index query` with images, recall per kind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

import twingan
from twingan.checkpoint import load_tensors, read_meta, save_checkpoint
from twingan.cli.main import main
from twingan.data.image_io import load_image, resize_square
from twingan.faces import FaceDetector, face_alignment_transform, warp_to_crop
from twingan.inference import Translator
from twingan.metrics.evaluate import evaluate_checkpoint
from twingan.metrics.paired import load_paired_test_set
from twingan.metrics.retrieval import embedding_recall, metric_name
from twingan.search import EmbeddingStore
from twingan.search.brute_force import cosine_topk
from twingan.search.results_grid import CAPTION_HEIGHT

STYLE_DOMAINS = {"photo": "human", "anime": "anime"}


@pytest.fixture(scope="module")
def translator(tiny_checkpoint) -> Translator:
    return twingan.load(tiny_checkpoint, device="cpu")


def embed_cli(checkpoint, *inputs, domain: str, out: Path, extra=()) -> int:
    return main(["embed", str(checkpoint), *map(str, inputs), "--domain", domain, "--out", str(out),
                 "--device", "cpu", "--no-progress", *extra])


def reference_embeddings(translator: Translator, files, domain: str, kind: str = "full") -> np.ndarray:
    """One image at a time through the Python API: the reference the batched CLI is checked against."""
    return np.concatenate([translator.embed(load_image(f), domain, kind) for f in files])


@pytest.fixture(scope="module")
def gallery(tiny_checkpoint, synthetic_root, tmp_path_factory) -> dict[str, Path]:
    """Stores of the anime faces (train + test) and the photo train faces, and a flat index over both."""
    root = tmp_path_factory.mktemp("gallery")
    anime, human = root / "anime.emb", root / "human.emb"
    assert embed_cli(tiny_checkpoint, synthetic_root / "train" / "anime", synthetic_root / "test" / "anime",
                     domain="anime", out=anime) == 0
    assert embed_cli(tiny_checkpoint, synthetic_root / "train" / "photo", domain="human", out=human) == 0
    assert len(EmbeddingStore.open(anime)) == 28  # train/anime/00000.png and test/anime/00000.png are both kept
    index = root / "faces.twgidx"
    assert main(["index", "build", str(anime), str(human), "--out", str(index), "--kind", "flat"]) == 0
    return {"anime": anime, "human": human, "index": index}


def test_embed_resumes_without_duplicates(translator, tiny_checkpoint, synthetic_root, tmp_path, capsys):
    folder = synthetic_root / "test" / "anime"
    files = sorted(folder.glob("*.png"))
    out = tmp_path / "anime.emb"
    assert embed_cli(tiny_checkpoint, *files[:2], domain="anime", out=out, extra=["--shard-size", "1", "--batch-size", "1"]) == 0
    capsys.readouterr()
    assert embed_cli(tiny_checkpoint, folder, domain="anime", out=out, extra=["--batch-size", "3"]) == 0
    assert f"{len(files) - 2} embedded, 0 failed, 2 already in the store" in capsys.readouterr().out
    assert embed_cli(tiny_checkpoint, folder, domain="anime", out=out) == 0
    assert f"0 embedded, 0 failed, {len(files)} already in the store" in capsys.readouterr().out

    store = EmbeddingStore.open(out)
    assert store.validate() == len(files) and len(store.shard_files()) == 3
    vectors, paths = store.load()
    assert paths == [str(f.resolve()) for f in files]
    np.testing.assert_allclose(vectors, reference_embeddings(translator, files, "anime"), atol=1e-5)
    assert store.domain == "anime" and store.meta.embedding_kind == "full"
    assert store.meta.dim == translator.embedding_dim("full")

    assert embed_cli(tiny_checkpoint, folder, domain="anime", out=out, extra=["--kind", "pooled"]) == 1
    assert "embedding_kind 'pooled' vs 'full'" in capsys.readouterr().err
    assert embed_cli(tiny_checkpoint, folder, domain="human", out=out) == 1
    assert "cannot resume it with domain 'human'" in capsys.readouterr().err


def test_bad_files_are_reported_and_skipped(translator, tiny_checkpoint, synthetic_root, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    good = [folder / "a.png", folder / "c.png"]
    for source, target in zip(sorted((synthetic_root / "test" / "photo").glob("*.png")), good):
        target.write_bytes(source.read_bytes())
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    Image.new("RGB", (8, 8)).save(folder / "tiny.png")
    out = tmp_path / "pooled.emb"
    assert embed_cli(tiny_checkpoint, folder, domain="human", out=out,
                     extra=["--kind", "pooled", "--relative-to", str(folder)]) == 1
    captured = capsys.readouterr()
    reasons = [line for line in captured.err.splitlines() if line.startswith(str(folder))]
    assert [line.split(":")[0] for line in reasons] == [str(folder / "b.png"), str(folder / "tiny.png")]
    assert "2 embedded, 2 failed" in captured.out
    vectors, paths = EmbeddingStore.open(out).load()
    assert paths == ["a.png", "c.png"]
    np.testing.assert_allclose(vectors, reference_embeddings(translator, good, "human", "pooled"), atol=1e-5)


def test_largest_face_of_a_photo_is_embedded(translator, tiny_checkpoint, tmp_path, capsys):
    astronaut = Image.fromarray(data.astronaut())
    photo = Image.new("RGB", (768, 512), (255, 255, 255))
    photo.paste(astronaut, (0, 0))
    photo.paste(astronaut.resize((192, 192), Image.Resampling.BOX), (560, 40))
    photos = tmp_path / "photos"
    photos.mkdir()
    photo.save(photos / "two.png")
    Image.new("RGB", (96, 80), (128, 128, 128)).save(photos / "blank.png")
    out = tmp_path / "faces.emb"
    assert embed_cli(tiny_checkpoint, photos, domain="human", out=out, extra=["--detect"]) == 1
    assert "no face found" in capsys.readouterr().err
    vectors, paths = EmbeddingStore.open(out).load()
    assert paths == [str((photos / "two.png").resolve())]

    faces = FaceDetector(device="cpu").detect(photo)
    assert len(faces) == 2
    largest = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    assert (largest.box[0] + largest.box[2]) / 2 < 512  # the big astronaut, not the small copy
    crop = warp_to_crop(photo, face_alignment_transform(largest.landmarks, translator.resolution),
                        translator.resolution)
    np.testing.assert_allclose(vectors, translator.embed(crop, "human"), atol=1e-5)


def test_image_query_equals_brute_force_and_draws_the_grid(translator, gallery, synthetic_root, tmp_path, capsys):
    queries = sorted((synthetic_root / "test" / "photo").glob("*.png"))[:2]
    grid = tmp_path / "grid.png"
    capsys.readouterr()
    code = main(["index", "query", str(gallery["index"]), *map(str, queries), "--checkpoint", str(translator.path),
                 "--domain", "anime", "--k", "5", "--json", "--grid", str(grid), "--tile", "32",
                 "--torch-device", "cpu"])
    assert code == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]

    gallery_vectors, gallery_paths = EmbeddingStore.open(gallery["anime"]).load()
    query_vectors = reference_embeddings(translator, queries, "human")  # --from defaults to the other domain
    scores, ids = cosine_topk(query_vectors, gallery_vectors, 5)
    assert [p["query"] for p in printed] == [str(q) for q in queries]
    for result, row_scores, row_ids in zip(printed, scores, ids):
        assert [hit["path"] for hit in result["results"]] == [gallery_paths[i] for i in row_ids]
        assert {hit["domain"] for hit in result["results"]} == {"anime"}
        np.testing.assert_allclose([hit["score"] for hit in result["results"]], row_scores, atol=1e-5)

    picture = np.asarray(Image.open(grid))
    assert picture.shape == (2 * (32 + CAPTION_HEIGHT), 6 * 32, 3)
    for row, (query, row_ids) in enumerate(zip(queries, ids)):
        top = row * (32 + CAPTION_HEIGHT)
        expected_query = Image.fromarray(resize_square(load_image(query), 16)).resize((32, 32), Image.NEAREST)
        assert np.array_equal(picture[top:top + 32, :32], np.asarray(expected_query))
        best = load_image(gallery_paths[row_ids[0]]).resize((32, 32), Image.NEAREST)
        assert np.array_equal(picture[top:top + 32, 32:64], np.asarray(best))
        assert (picture[top + 32:top + 32 + CAPTION_HEIGHT, 32:64] < 128).any()  # the caption is drawn


def test_query_without_domain_filter_searches_both_domains(translator, gallery, synthetic_root, capsys):
    query = sorted((synthetic_root / "test" / "anime").glob("*.png"))[1]
    capsys.readouterr()
    assert main(["index", "query", str(gallery["index"]), str(query), "--checkpoint", str(translator.path),
                 "--from", "anime", "--k", "3", "--json", "--torch-device", "cpu"]) == 0
    hits = json.loads(capsys.readouterr().out)["results"]
    assert hits[0]["path"] == str(query.resolve()) and hits[0]["score"] == pytest.approx(1.0, abs=1e-5)
    anime, anime_paths = EmbeddingStore.open(gallery["anime"]).load()
    human, human_paths = EmbeddingStore.open(gallery["human"]).load()
    _, ids = cosine_topk(reference_embeddings(translator, [query], "anime"), np.concatenate([anime, human]), 3)
    assert [hit["path"] for hit in hits] == [(anime_paths + human_paths)[i] for i in ids[0]]


def test_query_with_another_checkpoint_is_refused(translator, gallery, synthetic_root, tmp_path, capsys):
    tensors = load_tensors(translator.path)
    name = next(k for k in tensors if k.startswith("ema.") and tensors[k].is_floating_point())
    tensors[name] = tensors[name] + 0.01
    other = save_checkpoint(tmp_path / "other.safetensors", tensors, read_meta(translator.path))
    query = sorted((synthetic_root / "test" / "photo").glob("*.png"))[0]
    capsys.readouterr()
    assert main(["index", "query", str(gallery["index"]), str(query), "--checkpoint", str(other),
                 "--domain", "anime", "--torch-device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"the checkpoint {other}" in captured.err and "checkpoint_sha256" in captured.err
    assert "does not match the index" in captured.err

    pooled = tmp_path / "pooled.emb"
    assert embed_cli(translator.path, query, domain="human", out=pooled, extra=["--kind", "pooled"]) == 0
    capsys.readouterr()
    assert main(["index", "query", str(gallery["index"]), "--vectors", str(pooled)]) == 1
    err = capsys.readouterr().err
    assert "embedding_kind 'pooled' vs 'full'" in err and "dim" in err


def test_bad_query_image_is_reported_and_the_others_searched(translator, gallery, synthetic_root, tmp_path, capsys):
    good = sorted((synthetic_root / "test" / "photo").glob("*.png"))[2]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    capsys.readouterr()
    assert main(["index", "query", str(gallery["index"]), str(bad), str(good), "--checkpoint",
                 str(translator.path), "--domain", "anime", "--k", "2", "--torch-device", "cpu"]) == 1
    captured = capsys.readouterr()
    mentions = [line for line in captured.err.splitlines() if str(bad) in line]
    assert len(mentions) == 1 and mentions[0].startswith(f"{bad}: ")
    lines = captured.out.splitlines()
    assert lines[0] == str(good) and len(lines) == 3
    assert main(["index", "query", str(gallery["index"]), str(bad), "--checkpoint", str(translator.path),
                 "--domain", "anime", "--torch-device", "cpu"]) == 1
    assert "none of the query images could be used" in capsys.readouterr().err


def test_recall_per_embedding_kind_matches_references(translator, synthetic_root):
    test_set = load_paired_test_set(synthetic_root, translator.resolution)
    scores = embedding_recall(translator.model, test_set, STYLE_DOMAINS, ks=(1, 2))
    for kind in ("full", "pooled"):
        photos = reference_embeddings(translator, test_set.paths["photo"], "human", kind)
        animes = reference_embeddings(translator, test_set.paths["anime"], "anime", kind)
        for (src, dst), (queries, gallery_vectors) in {("photo", "anime"): (photos, animes),
                                                       ("anime", "photo"): (animes, photos)}.items():
            _, ids = cosine_topk(queries, gallery_vectors, 2)
            for k in (1, 2):
                found = np.mean([i in row[:k] for i, row in enumerate(ids)])
                assert scores[metric_name(src, dst, kind, k)] == pytest.approx(found)


def test_eval_reports_pooled_recall_for_every_system(tiny_checkpoint, synthetic_root):
    result = evaluate_checkpoint(tiny_checkpoint, synthetic_root, baselines=True, device="cpu",
                                 style_domains=STYLE_DOMAINS)
    metrics = set(result["scores"]["trained"])
    assert {"photo2anime/pooled_recall@1", "anime2photo/pooled_recall@10"} <= metrics
    assert set(result["scores"]["untrained"]) == set(result["scores"]["pixels"]) == metrics
    test_set = load_paired_test_set(synthetic_root, 16)
    colours = {style: test_set.images[style].mean(dim=(2, 3)).numpy() for style in ("photo", "anime")}
    _, ids = cosine_topk(colours["photo"] / np.linalg.norm(colours["photo"], axis=1, keepdims=True),
                         colours["anime"] / np.linalg.norm(colours["anime"], axis=1, keepdims=True), 1)
    assert result["scores"]["pixels"]["photo2anime/pooled_recall@1"] == pytest.approx(
        np.mean(ids[:, 0] == np.arange(len(ids))))


def test_query_images_are_streamed_a_batch_at_a_time(translator, gallery, synthetic_root, tmp_path, capsys,
                                                     monkeypatch):
    """`index query` decodes, embeds and searches one batch of query images at a time, as translate and embed
    do: no more than two batches of decoded pictures are alive at once, and the output is that of one batch."""
    import weakref

    import twingan.search.embed_images as embed_images

    queries = sorted((synthetic_root / "test" / "photo").glob("*.png")) + \
        sorted((synthetic_root / "train" / "photo").glob("*.png"))[:8]
    assert len(queries) == 12
    alive, most = set(), [0]
    original = embed_images.load_image

    def counted(path, **kwargs):
        picture = original(path, **kwargs)
        alive.add(id(picture))
        weakref.finalize(picture, alive.discard, id(picture))
        most[0] = max(most[0], len(alive))
        return picture

    monkeypatch.setattr(embed_images, "load_image", counted)
    outputs = {}
    for batch in (3, 64):
        grid = tmp_path / f"grid{batch}.png"
        capsys.readouterr()
        assert main(["index", "query", str(gallery["index"]), *map(str, queries), "--checkpoint",
                     str(translator.path), "--domain", "anime", "--k", "3", "--json", "--grid", str(grid),
                     "--tile", "24", "--batch-size", str(batch), "--torch-device", "cpu"]) == 0
        outputs[batch] = (capsys.readouterr().out, np.asarray(Image.open(grid)))
        if batch == 3:
            assert most[0] <= 6, most[0]
    assert outputs[3][0] == outputs[64][0]
    assert np.array_equal(outputs[3][1], outputs[64][1])
