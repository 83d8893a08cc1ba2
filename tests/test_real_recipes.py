"""The real-data recipes compose as documented, and their new settings can be overridden (to null, lists)."""
import pytest

from twingan.errors import ConfigError
from twingan.training import compose_config

ROOTS = ["data.domains.human.root=/photos", "data.domains.anime.root=/anime"]


def test_selfie2anime_real_composes_with_its_skips_and_profiles():
    cfg = compose_config(["experiment=selfie2anime_real", *ROOTS])
    assert cfg.model.resolution == 64 and cfg.model.skip_max_resolution == 16
    assert [spec.profile for spec in cfg.data.domains.values()] == ["photo", "anime"]
    assert list(cfg.data.domains) == ["human", "anime"]


def test_skip_and_augmentation_settings_take_overrides():
    cfg = compose_config(["experiment=selfie2anime_real", *ROOTS, "model.skip_max_resolution=null",
                          "loss.d_augment=[translation,cutout]"])
    assert cfg.model.skip_max_resolution is None and list(cfg.loss.d_augment) == ["translation", "cutout"]
    with pytest.raises(ConfigError, match="model.skip_max_resolution"):
        compose_config(["experiment=selfie2anime_real", *ROOTS, "model.skip_max_resolution=2.5"])
    with pytest.raises(ConfigError, match="loss.d_augment=cutout: expected a list"):
        compose_config(["experiment=selfie2anime_real", *ROOTS, "loss.d_augment=cutout"])


def test_the_recipe_needs_its_dataset_roots():
    with pytest.raises(ConfigError, match="data.domains.human.root"):
        compose_config(["experiment=selfie2anime_real"])


def test_a_run_recorded_before_the_new_settings_resumes(synthetic_root, tmp_path):
    """A checkpoint whose recorded config has neither model.skip_max_resolution nor loss.d_augment (written before
    they existed) resumes: the missing keys read as the values that do what such a run did."""
    from helpers import tiny_run_overrides
    from twingan.checkpoint import load_tensors, read_meta, save_checkpoint
    from twingan.training import train

    run = tmp_path / "old"
    first = train(tiny_run_overrides(synthetic_root, run, "train.max_images=16"))
    meta = read_meta(first)
    del meta["config"]["model"]["skip_max_resolution"], meta["config"]["loss"]["d_augment"]
    del meta["model_config"]["skip_max_resolution"]
    save_checkpoint(first, load_tensors(first), meta)
    resumed = train(tiny_run_overrides(synthetic_root, run, "resume=auto"))
    assert resumed != first and read_meta(resumed)["config"]["model"]["skip_max_resolution"] is None
    with pytest.raises(ConfigError, match="model.skip_max_resolution=8 differs from the run being resumed"):
        train(tiny_run_overrides(synthetic_root, run, "resume=auto", "model.skip_max_resolution=8"))
