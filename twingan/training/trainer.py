"""The TwinGAN training loop: progressive growing, alternating D/G steps, EMA, exact resume."""
from __future__ import annotations

import contextlib
import logging
import random
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import DictConfig

import twingan
from twingan.checkpoint import check_finite, load_tensors, read_meta, save_checkpoint, stored_model_config, verify_checkpoint
from twingan.data.augment import Augment, progressive_blend
from twingan.data.datasets import build_domain_dataset
from twingan.errors import CheckpointError, ConfigError, NonFiniteOutputError, TwinGANError
from twingan.losses import TranslationLosses, draw_inputs
from twingan.models import Discriminators, TwinGAN
import twingan.training.config as config_lib
import twingan.training.distributed as ddp
from twingan.training.calibration import calibrate, calibration_images
from twingan.training.data_stream import EpochPermutations, batch_iterator
from twingan.training.ema import EmaTranslator
from twingan.training.run_folder import RunFolder, RunLogger, sample_grid
from twingan.utils.device import resolve_device
from twingan.utils.progress import progress_bar

log = logging.getLogger("twingan.train")


class TrainingDiverged(TwinGANError):
    """A loss became NaN or infinite and the nan_policy says stop (or rollbacks ran out)."""


class Trainer:
    def __init__(self, cfg: DictConfig) -> None:
        config_lib.check_choices(cfg)
        self.cfg = cfg
        self.device = resolve_device(str(cfg.device))
        if cfg.train.cpu_threads is not None:
            torch.set_num_threads(int(cfg.train.cpu_threads))
        self.dist = ddp.init_from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        self.precision = str(cfg.train.precision)
        if self.precision != "fp32" and self.device.type != "cuda":
            raise ConfigError(f"train.precision={self.precision} needs a CUDA device; use train.precision=fp32 on CPU")
        self.model_cfg = config_lib.model_config(cfg)
        self.objective, self.weights = config_lib.loss_settings(cfg)
        self.losses = TranslationLosses(self.objective, self.weights)
        self.schedule = config_lib.schedule(cfg, self.dist.world_size)
        self.folder = RunFolder(Path(cfg.run_dir) if cfg.run_dir else Path("runs") / str(cfg.name))
        self.datasets = [build_domain_dataset(spec) for spec in config_lib.dataset_specs(cfg)]
        self.labels = self._label_matrices()
        self.seed = int(cfg.seed)

        torch.manual_seed(self.seed)
        self.model = TwinGAN(self.model_cfg).to(self.device)
        self.discs = Discriminators(self.model_cfg).to(self.device)
        if bool(cfg.train.channels_last) and self.device.type == "cuda":
            self.model.to(memory_format=torch.channels_last)
            self.discs.to(memory_format=torch.channels_last)
        ddp.broadcast_module(self.model, self.dist)
        ddp.broadcast_module(self.discs, self.dist)
        opt = cfg.train.optimizer
        adam = dict(lr=float(opt.lr), betas=tuple(float(b) for b in opt.betas), eps=float(opt.eps))
        self.opt_g = torch.optim.Adam(self.model.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.discs.parameters(), **adam)
        self.ema = EmaTranslator(
            self.model,
            float(cfg.train.ema.half_life_images),
            None if cfg.train.ema.rampup is None else float(cfg.train.ema.rampup),
        )
        self.scalers = None
        if self.precision == "fp16":
            self.scalers = (torch.amp.GradScaler("cuda"), torch.amp.GradScaler("cuda"))
        self.orders = [EpochPermutations(len(ds), self.seed, d) for d, ds in enumerate(self.datasets)]
        self.aug_rng = torch.Generator().manual_seed(self._rank_seed(1))
        self.noise_rng = torch.Generator(self.device).manual_seed(self._rank_seed(2))
        self.images_seen = 0
        self.step = 0
        self.rollbacks = 0
        self.lr_factor = 1.0
        self.logger: RunLogger | None = None
        self._calibrated_at: int | None = None

    def _label_matrices(self) -> list[np.ndarray | None] | None:
        """Attribute labels of every dataset (model.attributes set), None when the model has no attributes."""
        schema = self.model_cfg.attribute_schema
        if not schema:
            return None
        from twingan.data.labels import label_matrix, labels_source

        matrices: list[np.ndarray | None] = []
        for name, ds in zip(self.model_cfg.domains, self.datasets):
            matrix = label_matrix(ds, schema)
            known = int((matrix >= 0).any(axis=1).sum())
            log.info("domain %s: attribute labels for %d of %d images (%s)", name, known, len(ds),
                     labels_source(ds) or "no labels source")
            matrices.append(matrix if known else None)
        if all(m is None for m in matrices):
            raise ConfigError(
                f"model.attributes names {list(schema.names)} but no dataset has labels for them; put a labels.csv "
                "(file,<attribute>,...) beside a folder dataset or use CelebA's list_attr_celeba.txt"
            )
        return matrices

    def _rank_seed(self, stream: int) -> int:
        return (self.seed * 1_000_003 + stream * 65_537 + self.dist.rank * 257) % (2**63)

    # ---- state ---------------------------------------------------------------------------------

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        for prefix, module in (("model.", self.model), ("ema.", self.ema.model), ("disc.", self.discs)):
            tensors.update({prefix + k: v for k, v in module.state_dict().items()})
        optim_meta = {}
        for name, opt in (("g", self.opt_g), ("d", self.opt_d)):
            sd = opt.state_dict()
            for idx, state in sd["state"].items():
                for key, value in state.items():
                    tensors[f"optim.{name}.{idx}.{key}"] = torch.as_tensor(value)
            optim_meta[name] = sd["param_groups"]
        rng_states = ddp.gather_objects(
            {"aug": self.aug_rng.get_state(), "noise": self.noise_rng.get_state(), "torch": torch.get_rng_state()},
            self.dist,
        )
        for rank, states in enumerate(rng_states):
            for key, value in states.items():
                tensors[f"rng.{key}.{rank}"] = value
        meta = {
            "kind": "training",
            "twingan_version": twingan.__version__,
            "model_config": self.model_cfg.to_dict(),
            "config": config_lib.config_to_dict(self.cfg),
            "domain_profiles": config_lib.domain_profiles(self.cfg),
            "progress": {
                "resolution": self.model.resolution,
                "alpha": self.model.alpha,
                "images_seen": self.images_seen,
                "step": self.step,
                "total_images": self.schedule.total_images,
            },
            "data": {"samples_drawn_per_domain": self.images_seen, "domains": list(self.model_cfg.domains)},
            "optimizers": optim_meta,
            "rng": {"numpy": _numpy_state(), "python": _python_state()},
            "world_size": self.dist.world_size,
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
            "scalers": [s.state_dict() for s in self.scalers] if self.scalers else None,
        }
        return tensors, meta

    def _load_state(self, path: Path) -> None:
        meta = read_meta(path)
        if meta.get("kind") != "training":
            raise CheckpointError(f"{path}: not a training checkpoint (kind={meta.get('kind')!r}); cannot resume from it")
        if stored_model_config(meta, path) != self.model_cfg:
            raise CheckpointError(
                f"{path}: its architecture differs from this run's model settings; resume with the config it was "
                "trained with (see config.yaml in its run folder)"
            )
        tensors = load_tensors(path, device="cpu")
        check_finite({k: v for k, v in tensors.items() if not k.startswith("rng.")}, path, "weight or optimiser")
        for prefix, module in (("model.", self.model), ("ema.", self.ema.model), ("disc.", self.discs)):
            sub = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            module.load_state_dict(sub, strict=True)
        for name, opt in (("g", self.opt_g), ("d", self.opt_d)):
            state: dict[int, dict[str, torch.Tensor]] = {}
            for key, value in tensors.items():
                if key.startswith(f"optim.{name}."):
                    _, _, idx, field = key.split(".", 3)
                    state.setdefault(int(idx), {})[field] = value
            opt.load_state_dict({"state": state, "param_groups": meta["optimizers"][name]})
        progress = meta["progress"]
        self._calibrated_at = None
        self.images_seen = int(progress["images_seen"])
        self.step = int(progress["step"])
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.lr_factor = float(meta.get("lr_factor", 1.0))
        if self.scalers and meta.get("scalers"):
            for scaler, sd in zip(self.scalers, meta["scalers"]):
                scaler.load_state_dict(sd)
        rank = self.dist.rank
        if int(meta.get("world_size", 1)) == self.dist.world_size and f"rng.aug.{rank}" in tensors:
            self.aug_rng.set_state(tensors[f"rng.aug.{rank}"])
            self.noise_rng.set_state(tensors[f"rng.noise.{rank}"])
            torch.set_rng_state(tensors[f"rng.torch.{rank}"])
            _set_numpy_state(meta["rng"]["numpy"])
            _set_python_state(meta["rng"]["python"])
        else:
            log.warning(
                "resuming with %d ranks from a checkpoint written by %s: random streams are re-seeded, so the "
                "continuation is valid but not bit-identical to an uninterrupted run",
                self.dist.world_size,
                meta.get("world_size"),
            )
            self.aug_rng.manual_seed(self._rank_seed(1) + self.images_seen)
            self.noise_rng.manual_seed(self._rank_seed(2) + self.images_seen)
        self._set_progress(self.images_seen)

    def _find_resume(self) -> Path | None:
        resume = self.cfg.resume
        if resume is None:
            if self.folder.list_checkpoints():
                raise ConfigError(
                    f"run folder {self.folder.root} already has checkpoints; pass resume=auto to continue it, "
                    "or choose another run_dir / name"
                )
            return None
        if str(resume) != "auto":
            path = Path(str(resume))
            if not path.is_file():
                raise ConfigError(f"resume={resume}: no such checkpoint file")
            return path
        for path in reversed(self.folder.list_checkpoints()):
            try:
                verify_checkpoint(path)
                return path
            except CheckpointError as exc:
                log.warning("skipping unreadable checkpoint %s: %s", path, exc)
        return None

    def _calibrate(self) -> None:
        """Measure the inference statistics of the raw and EMA weights (once per image count)."""
        if self._calibrated_at == self.images_seen:
            return
        calibrate((self.model, self.ema.model), calibration_images(self.datasets, self.model.resolution))
        self._calibrated_at = self.images_seen

    def _save_checkpoint(self) -> Path | None:
        self._calibrate()
        for module in (self.model, self.ema.model, self.discs):
            for name, t in module.state_dict().items():
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise TrainingDiverged(f"refusing to write a checkpoint: {name} holds NaN/inf values")
        tensors, meta = self._state()
        path = None
        if self.dist.is_main:
            path = save_checkpoint(self.folder.checkpoint_path(self.images_seen), tensors, meta)
            self.folder.prune_checkpoints(int(self.cfg.train.checkpoint.keep_last))
        ddp.barrier(self.dist)
        return path

    # ---- training ------------------------------------------------------------------------------

    def _set_progress(self, images_seen: int) -> tuple[int, float]:
        phase = self.schedule.phase_at(images_seen)
        alpha = self.schedule.alpha_at(images_seen)
        for module in (self.model, self.discs, self.ema.model):
            module.set_progress(phase.resolution, alpha)
        return phase.resolution, alpha

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _check_finite(self, name: str, value: torch.Tensor) -> None:
        if not torch.isfinite(value).all():
            raise _NonFinite(f"{name} is {value.item()} at step {self.step} ({self.images_seen} images)")

    def _optimise(self, loss: torch.Tensor, module: torch.nn.Module, opt: torch.optim.Optimizer, side: int) -> None:
        opt.zero_grad(set_to_none=True)
        scaler = self.scalers[side] if self.scalers else None
        (scaler.scale(loss) if scaler else loss).backward()
        ddp.average_gradients(module, self.dist)
        if scaler:
            scaler.unscale_(opt)
        if self.cfg.train.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), float(self.cfg.train.grad_clip))
        if scaler:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()

    def _train_step(
        self,
        batches: Sequence[torch.Tensor],
        augment: Augment,
        alpha: float,
        labels: Sequence[torch.Tensor | None] | None = None,
    ) -> dict[str, float]:
        reals = []
        for batch in batches:
            x = augment(batch.to(self.device, non_blocking=True), self.aug_rng)
            if alpha < 1.0:
                x = progressive_blend(x, alpha)
            if bool(self.cfg.train.channels_last) and self.device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            reals.append(x)
        inputs = draw_inputs(self.model, reals, labels, self.noise_rng)
        self.discs.requires_grad_(False)
        try:
            with self._autocast():
                g_loss, logs, rendered = self.losses.generator_step(self.model, self.discs, inputs)
            self._check_finite("the generator loss", g_loss)
            self._optimise(g_loss, self.model, self.opt_g, 0)
        finally:
            self.discs.requires_grad_(True)
        if self.losses.has_discriminator_terms(self.model, len(reals)):
            every = int(self.cfg.loss.penalty_every)
            penalty_scale = float(every) if self.step % every == 0 else 0.0
            for _ in range(int(self.cfg.train.d_steps)):
                with self._autocast():
                    d_loss, d_logs = self.losses.discriminator_loss(
                        self.model, self.discs, inputs, self.noise_rng, rendered=rendered, penalty_scale=penalty_scale
                    )
                self._check_finite("the discriminator loss", d_loss)
                self._optimise(d_loss, self.discs, self.opt_d, 1)
                logs.update(d_logs)
        else:
            logs["d_total"] = torch.zeros(())
        ddp.average_buffers(self.model, self.dist)
        return {k: float(v) for k, v in logs.items()}

    def _apply_lr_factor(self) -> None:
        """The configured optimiser settings, the learning rate scaled by the run's rollback factor.

        Called after every checkpoint load: a resume applies a changed train.optimizer setting instead of the
        values stored in the checkpoint's optimiser state.
        """
        opt_cfg = self.cfg.train.optimizer
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = float(opt_cfg.lr) * self.lr_factor
                group["betas"] = tuple(float(b) for b in opt_cfg.betas)
                group["eps"] = float(opt_cfg.eps)

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Fixed images of every domain: source, reconstruction, translation to each other domain and back.

        With a style encoder also the translation taking its style from other faces of the
        target domain (the rolled fixed images); with a mapping network one row of faces
        generated from fixed noise per domain.
        """
        model = self.ema.model
        n = int(self.cfg.logging.samples.per_domain)
        res = model.resolution
        fixed = []
        for ds in self.datasets:
            ds.set_resolution(res)
            x = torch.stack([ds[i % len(ds)] for i in range(n)]).to(self.device)
            fixed.append(x.float().div(127.5).sub(1.0))
        rows = []
        for o, x in enumerate(fixed):
            rows += [x, model.reconstruct(x, o)]
            for d in range(len(fixed)):
                if d != o:
                    fake = model.translate(x, o, d)
                    rows += [fake, model.translate(fake, d, o)]
                    if model.style_encoder is not None:
                        style = model.style(fixed[d].roll(1, 0), d)
                        rows.append(model.translate(x, o, d, model.condition(n, style=style)))
        if model.mapping is not None:
            z = torch.randn(n, model.cfg.noise_dim, generator=torch.Generator().manual_seed(self.seed)).to(self.device)
            rows += [model.generate(z, d) for d in range(len(fixed))]
        return sample_grid(rows, n)

    def _write_samples(self) -> None:
        self._calibrate()  # on every rank: the ranks' statistics stay identical
        if not self.dist.is_main:
            return
        grid = self.sample_grid()
        self.folder.save_samples(grid, self.images_seen)
        if self.logger:
            self.logger.add_image("samples", grid, self.images_seen)

    def _maybe_evaluate(self, before: int) -> None:
        """Paired-synthetic scores of the EMA model when logging.eval.every_images is crossed (rank 0 logs them).

        Eval mode, no gradients, and no draw from any training random stream, so exact resume is unaffected.
        """
        every = int(self.cfg.logging.eval.every_images)
        if every <= 0:
            return
        if self.cfg.data.get("synthetic") is None:
            raise ConfigError(
                "logging.eval.every_images needs the synthetic paired test set (data.synthetic); "
                "set logging.eval.every_images=0 for this dataset, or score checkpoints with `twingan eval`"
            )
        if before // every == self.images_seen // every:
            return
        self._calibrate()  # on every rank: the ranks' statistics stay identical
        if not self.dist.is_main:
            return
        from twingan.metrics.evaluate import evaluate_checkpoint, log_record

        try:
            with torch.no_grad():
                result = evaluate_checkpoint(
                    self.ema.model,
                    config=config_lib.config_to_dict(self.cfg),
                    baselines=bool(self.cfg.logging.eval.baselines),
                )
        except NonFiniteOutputError as exc:
            log.warning("eval at %d images skipped: %s", self.images_seen, exc)
            return
        if self.logger:
            self.logger.log({"step": self.step, "images": self.images_seen, **log_record(result)})

    def run(self) -> Path:
        """Train to the end of the schedule (or train.max_images); returns the last checkpoint's path."""
        try:
            return self._run()
        finally:
            if self.logger:
                self.logger.close()
            ddp.shutdown()

    def _run(self) -> Path:
        resume_path = self._find_resume()
        if resume_path is not None:
            for change in config_lib.resume_changes(read_meta(resume_path).get("config", {}), self.cfg, str(resume_path)):
                log.info("resumed with a changed setting, applied from here on: %s", change)
        if self.dist.is_main:
            self.folder.create()
            self.folder.remove_stale_temporaries()
            self.folder.save_config(self.cfg)
        ddp.barrier(self.dist)
        if resume_path is not None:
            self._load_state(resume_path)
            self._apply_lr_factor()
            log.info("resumed from %s at %d images", resume_path, self.images_seen)
        if self.dist.is_main:
            self.folder.truncate_log(self.images_seen)
            self.logger = RunLogger(self.folder, bool(self.cfg.logging.tensorboard))
        end = self.schedule.total_images
        if self.cfg.train.max_images is not None:
            end = min(end, int(self.cfg.train.max_images))
        ckpt_every = int(self.cfg.train.checkpoint.every_images)
        sample_every = int(self.cfg.logging.samples.every_images)
        bar = progress_bar(
            total=end,
            initial=min(self.images_seen, end),
            unit="img",
            dynamic_ncols=True,
            disable=not (self.dist.is_main and bool(self.cfg.logging.progress_bar)),
        )
        loader, loader_key = None, None
        last_path: Path | None = resume_path
        last_log_time, last_log_images = time.perf_counter(), self.images_seen
        try:
            while self.images_seen < end:
                phase = self.schedule.phase_at(self.images_seen)
                resolution, alpha = self._set_progress(self.images_seen)
                if loader_key != (phase.resolution, phase.batch_size):
                    loader = batch_iterator(
                        self.datasets, self.orders, self.images_seen, phase.batch_size, resolution,
                        int(self.cfg.data.num_workers), self.dist.rank, self.dist.world_size,
                        pin_memory=self.device.type == "cuda",
                        **({"labels": self.labels} if self.labels is not None else {}),
                    )
                    augment = Augment(resolution, **config_lib.config_to_dict(self.cfg.data.augment))
                    loader_key = (phase.resolution, phase.batch_size)
                batches, labels = next(loader) if self.labels is not None else (next(loader), None)
                try:
                    logs = self._train_step(batches, augment, alpha, labels)
                except _NonFinite as exc:
                    last_path = self._handle_divergence(str(exc), last_path)
                    loader, loader_key = None, None
                    continue
                before = self.images_seen
                step_images = phase.batch_size * self.dist.world_size
                self.images_seen += step_images
                self.step += 1
                self.ema.update(self.model, self.images_seen, step_images)
                bar.update(step_images)
                if self.step % int(self.cfg.logging.every_steps) == 0 and self.logger:
                    now = time.perf_counter()
                    rate = (self.images_seen - last_log_images) / max(now - last_log_time, 1e-9)
                    last_log_time, last_log_images = now, self.images_seen
                    bar.set_postfix(res=resolution, alpha=f"{alpha:.2f}", g=f"{logs['g_total']:.3f}", d=f"{logs['d_total']:.3f}")
                    self.logger.log(
                        {"step": self.step, "images": self.images_seen, "resolution": resolution, "alpha": alpha,
                         "phase": phase.kind, "images_per_s": rate, **logs}
                    )
                if sample_every > 0 and before // sample_every != self.images_seen // sample_every:
                    self._write_samples()
                self._maybe_evaluate(before)
                if before // ckpt_every != self.images_seen // ckpt_every or self.images_seen >= end:
                    self._check_ranks_in_sync()
                    last_path = self._save_checkpoint() or last_path
        finally:
            bar.close()
        self._write_samples()
        return self.folder.checkpoint_path(self.images_seen)

    def _check_ranks_in_sync(self) -> None:
        if not self.dist.enabled:
            return
        checksum = ddp.parameter_checksum(self.model) + ddp.parameter_checksum(self.discs)
        in_sync = ddp.ranks_agree(checksum, self.dist)
        if self.logger:
            self.logger.log({"images": self.images_seen, "ranks_in_sync": in_sync, "world_size": self.dist.world_size})
        if not in_sync:
            raise TrainingDiverged(f"ranks hold different weights at {self.images_seen} images; stopping")

    def _handle_divergence(self, message: str, last_path: Path | None) -> Path | None:
        """Stop, or reload the last checkpoint with a lower learning rate (``train.nan_policy=rollback``).

        The rollback count and the learning-rate factor belong to the run, not to the checkpoint rolled back
        to: they carry over the reload, so every rollback counts against ``train.max_rollbacks``, the factor
        compounds, and each retry draws fresh noise and augmentation.
        """
        policy = str(self.cfg.train.nan_policy)
        if self.logger:
            self.logger.log({"images": self.images_seen, "step": self.step, "event": "non-finite loss", "detail": message})
        limit = int(self.cfg.train.max_rollbacks)
        if policy == "stop" or last_path is None or self.rollbacks >= limit:
            where = f"the last good checkpoint is {last_path}" if last_path else "no checkpoint was written"
            if policy == "rollback" and last_path is not None:
                advice = (f"gave up after {self.rollbacks} rollbacks (train.max_rollbacks={limit}, learning rate "
                          f"x{self.lr_factor:g}). Lower train.optimizer.lr or set train.grad_clip")
            else:
                advice = "Lower train.optimizer.lr, set train.grad_clip, or use train.nan_policy=rollback"
            raise TrainingDiverged(
                f"training diverged: {message}; {where}. No checkpoint was written after the failure; {advice}."
            )
        rollbacks = self.rollbacks + 1
        lr_factor = self.lr_factor * float(self.cfg.train.rollback_lr_factor)
        self._load_state(last_path)
        self.rollbacks, self.lr_factor = rollbacks, lr_factor
        self._apply_lr_factor()
        self.noise_rng.manual_seed(self._rank_seed(2) + 7919 * self.rollbacks)
        self.aug_rng.manual_seed(self._rank_seed(1) + 7919 * self.rollbacks)
        log.warning("%s; rollback %d of at most %d: back to %s with learning rate x%g", message, self.rollbacks,
                    limit, last_path, self.lr_factor)
        return last_path


class _NonFinite(Exception):
    pass


def _numpy_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _set_numpy_state(state: list) -> None:
    name, keys, pos, has_gauss, cached = state
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _python_state() -> list:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list) -> None:
    version, internal, gauss = state
    random.setstate((version, tuple(internal), gauss))


def train(overrides: Sequence[str] = ()) -> Path:
    """Compose the config from Hydra ``overrides`` and train; returns the final checkpoint's path."""
    cfg = config_lib.compose_config(overrides)
    prepare_data(cfg)
    return Trainer(cfg).run()


def prepare_data(cfg: DictConfig) -> None:
    """Generate the synthetic dataset when the config asks for it (idempotent; rank 0 writes, others wait)."""
    syn = cfg.data.get("synthetic")
    if syn is None:
        return
    from twingan.data.synthetic import generate_dataset

    root = Path(str(syn.root))
    if ddp.env_rank() == 0:
        generate_dataset(root, int(syn.n_train), int(syn.n_test), int(syn.size), int(syn.seed))
    else:
        ddp.wait_for_file(root / "synthetic.json")
