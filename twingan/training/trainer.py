"""The TwinGAN training loop: progressive growing, alternating D/G steps, EMA, exact resume."""
from __future__ import annotations

import logging
import signal
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from omegaconf import DictConfig
from torch.profiler import record_function

import twingan
from twingan.checkpoint import read_meta, save_checkpoint, verify_checkpoint
from twingan.data.augment import Augment, progressive_blend
from twingan.data.datasets import build_domain_dataset
from twingan.errors import CheckpointError, ConfigError, NonFiniteOutputError, TwinGANError, quoted
from twingan.losses import TranslationLosses, draw_inputs
from twingan.models import Discriminators, TwinGAN
import twingan.training.config as config_lib
import twingan.training.distributed as ddp
from twingan.training.calibration import calibrate, calibration_images
from twingan.training.data_stream import EpochPermutations, batch_iterator
from twingan.training.ema import EmaTranslator
from twingan.training.run_folder import RunFolder, RunLogger
from twingan.training.run_lock import RunLock
from twingan.training.samples import fixed_sample_grid
from twingan.training.settings import TrainSettings
from twingan.training.stop_request import StopRequest
import twingan.training.training_state as training_state
from twingan.utils.device import autocast, resolve_channels_last, resolve_device, resolve_precision
from twingan.utils.progress import progress_bar

log = logging.getLogger("twingan.train")


class TrainingDiverged(TwinGANError):
    """A loss became NaN or infinite and the nan_policy says stop (or rollbacks ran out)."""


class Trainer:
    def __init__(self, cfg: DictConfig) -> None:
        config_lib.check_choices(cfg)
        self.cfg = cfg
        self.settings = settings = TrainSettings.from_config(cfg)
        self.device = resolve_device(settings.device)
        if settings.cpu_threads is not None:
            torch.set_num_threads(settings.cpu_threads)
        self.dist = ddp.init_from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
            torch.cuda.set_device(self.device)
        try:
            self.precision = resolve_precision(settings.precision, self.device)
            self.channels_last = resolve_channels_last(settings.channels_last, self.device)
        except ConfigError as exc:
            raise ConfigError(f"train.{exc}") from None
        self.model_cfg = config_lib.model_config(cfg)
        self.objective, self.weights = config_lib.loss_settings(cfg)
        self.losses = TranslationLosses(self.objective, self.weights, config_lib.discriminator_augment(cfg))
        self.schedule = config_lib.schedule(cfg, self.dist.world_size)
        self.folder = RunFolder(settings.run_dir)
        self.lock = RunLock(settings.run_dir)
        self.stopped_by: int | None = None
        """The signal (SIGTERM, SIGINT) that stopped the last :meth:`run` early, after writing a checkpoint."""
        self.datasets = [build_domain_dataset(spec) for spec in config_lib.dataset_specs(cfg)]
        self.labels = self._label_matrices()
        self.seed = settings.seed

        torch.manual_seed(self.seed)
        self.model = TwinGAN(self.model_cfg).to(self.device)
        self.discs = Discriminators(self.model_cfg).to(self.device)
        for d, matrix in enumerate(self.labels or []):
            if matrix is not None:
                self.model.set_attribute_prior(d, torch.from_numpy(matrix))
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.discs.to(memory_format=torch.channels_last)
        ddp.broadcast_module(self.model, self.dist)
        ddp.broadcast_module(self.discs, self.dist)
        opt = settings.optimizer
        adam = dict(lr=opt.lr, betas=opt.betas, eps=opt.eps)
        self.opt_g = torch.optim.Adam(self.model.parameters(), **adam)
        self.opt_d = torch.optim.Adam(self.discs.parameters(), **adam)
        self.ema = EmaTranslator(self.model, settings.ema_half_life_images, settings.ema_rampup)
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
                "(file,<attribute>,...) beside a folder dataset, use CelebA's list_attr_celeba.txt, or train "
                "without attributes (model.attributes=null)"
            )
        return matrices

    def _rank_seed(self, stream: int) -> int:
        return (self.seed * 1_000_003 + stream * 65_537 + self.dist.rank * 257) % (2**63)

    # ---- state ---------------------------------------------------------------------------------

    def _named_modules(self) -> list[tuple[str, torch.nn.Module]]:
        return [("model.", self.model), ("ema.", self.ema.model), ("disc.", self.discs)]

    def _named_optimizers(self) -> list[tuple[str, torch.optim.Optimizer]]:
        return [("g", self.opt_g), ("d", self.opt_d)]

    def _random_streams(self) -> dict[str, torch.Generator]:
        return {"aug": self.aug_rng, "noise": self.noise_rng}

    def _state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors, param_groups = training_state.weights_and_optimizers(self._named_modules(), self._named_optimizers())
        tensors.update(training_state.random_stream_tensors(self._random_streams(), self.dist))
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
            "optimizers": param_groups,
            "rng": training_state.global_random_states(),
            "world_size": self.dist.world_size,
            "rollbacks": self.rollbacks,
            "lr_factor": self.lr_factor,
            "scalers": [s.state_dict() for s in self.scalers] if self.scalers else None,
        }
        return tensors, meta

    def _load_state(self, path: Path) -> None:
        tensors, meta = training_state.read_training_checkpoint(path, self.model_cfg)
        training_state.load_weights_and_optimizers(tensors, meta, self._named_modules(), self._named_optimizers())
        progress = meta["progress"]
        self._calibrated_at = None
        self.images_seen = int(progress["images_seen"])
        self.step = int(progress["step"])
        self.rollbacks = int(meta.get("rollbacks", 0))
        self.lr_factor = float(meta.get("lr_factor", 1.0))
        if self.scalers and meta.get("scalers"):
            for scaler, sd in zip(self.scalers, meta["scalers"]):
                scaler.load_state_dict(sd)
        if not training_state.restore_random_streams(tensors, meta, self._random_streams(), self.dist):
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
        resume = self.settings.resume
        if resume is None:
            if self.folder.list_checkpoints():
                raise ConfigError(
                    f"run folder {self.folder.root} already has checkpoints; pass resume=auto to continue it, "
                    "or choose another run_dir / name"
                )
            return None
        if resume != "auto":
            path = Path(resume)
            if not path.is_file():
                raise ConfigError(f"resume={resume}: no such checkpoint file")
            return path
        unreadable: list[tuple[Path, CheckpointError]] = []
        for path in reversed(self.folder.list_checkpoints()):
            try:
                verify_checkpoint(path)
            except CheckpointError as exc:
                unreadable.append((path, exc))
                continue
            for bad, exc in unreadable:
                log.warning("skipping unreadable checkpoint %s: %s", bad, exc)
            return path
        if unreadable:
            names = ", ".join(quoted(p.name) for p, _ in unreadable[:3])
            more = f" and {len(unreadable) - 3} more" if len(unreadable) > 3 else ""
            raise CheckpointError(
                f"resume=auto: no checkpoint in {quoted(self.folder.checkpoints)} can be read ({names}{more}; "
                f"{unreadable[0][1]}); nothing was changed. Resume from a good copy with resume=PATH, or start "
                "afresh with another run_dir"
            )
        return None

    def _calibrate(self) -> None:
        """Measure the inference statistics of the raw and EMA weights (once per image count)."""
        if self._calibrated_at == self.images_seen:
            return
        calibrate((self.model, self.ema.model), calibration_images(self.datasets, self.model.resolution))
        self._calibrated_at = self.images_seen

    def _save_checkpoint(self) -> Path:
        """Write the checkpoint of this point (rank 0), verified, and apply retention; every rank gets its path."""
        self._calibrate()
        for module in (self.model, self.ema.model, self.discs):
            for name, t in module.state_dict().items():
                if t.is_floating_point() and not torch.isfinite(t).all():
                    raise TrainingDiverged(f"refusing to write a checkpoint: {name} holds NaN/inf values")
        tensors, meta = self._state()
        path = self.folder.checkpoint_path(self.images_seen)
        if self.dist.is_main:
            save_checkpoint(path, tensors, meta)
            try:
                verify_checkpoint(path)
            except CheckpointError as exc:
                raise CheckpointError(f"the checkpoint just written does not read back ({exc}); the earlier ones "
                                      "are kept: check the disk, then resume") from exc
            self.folder.retain(path, self.settings.checkpoint_keep_last)
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
        return autocast(self.device, self.precision)

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
        if self.settings.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.settings.grad_clip)
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
        with record_function("twingan.augment"):
            for batch in batches:
                x = augment(batch.to(self.device, non_blocking=True), self.aug_rng)
                if alpha < 1.0:
                    x = progressive_blend(x, alpha)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                reals.append(x)
        inputs = draw_inputs(self.model, reals, labels, self.noise_rng)
        self.discs.requires_grad_(False)
        try:
            with self._autocast(), record_function("twingan.generator_step"):
                g_loss, logs, rendered = self.losses.generator_step(self.model, self.discs, inputs, self.noise_rng)
            self._check_finite("the generator loss", g_loss)
            with record_function("twingan.generator_update"):
                self._optimise(g_loss, self.model, self.opt_g, 0)
        finally:
            self.discs.requires_grad_(True)
        if self.losses.has_discriminator_terms(self.model, len(reals)):
            every = self.settings.penalty_every
            penalty_scale = float(every) if self.step % every == 0 else 0.0
            for _ in range(self.settings.d_steps):
                with self._autocast(), record_function("twingan.discriminator_step"):
                    d_loss, d_logs = self.losses.discriminator_loss(
                        self.model, self.discs, inputs, self.noise_rng, rendered=rendered, penalty_scale=penalty_scale
                    )
                self._check_finite("the discriminator loss", d_loss)
                with record_function("twingan.discriminator_update"):
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
        opt_cfg = self.settings.optimizer
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = opt_cfg.lr * self.lr_factor
                group["betas"] = opt_cfg.betas
                group["eps"] = opt_cfg.eps

    def sample_grid(self) -> torch.Tensor:
        """The EMA model's sample grid (:func:`~twingan.training.samples.fixed_sample_grid`)."""
        return fixed_sample_grid(self.ema.model, self.datasets, self.settings.samples_per_domain, self.device, self.seed)

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
        every = self.settings.eval_every_images
        if every <= 0:
            return
        if not self.settings.has_synthetic_test_set:
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
                    baselines=self.settings.eval_baselines,
                )
        except NonFiniteOutputError as exc:
            log.warning("eval at %d images skipped: %s", self.images_seen, exc)
            return
        if self.logger:
            self.logger.log({"step": self.step, "images": self.images_seen, **log_record(result)})

    def run(self) -> Path:
        """Train to the end of the schedule (or train.max_images); returns the last checkpoint's path.

        The run owns its folder meanwhile (:class:`~twingan.training.run_lock.RunLock`). A first SIGTERM or
        SIGINT stops it after the current step with a checkpoint (:attr:`stopped_by` names the signal); a
        second one aborts at once.
        """
        self.stopped_by = None
        try:
            self._own_run_folder()
            with StopRequest() as stop:
                return self._run(stop)
        finally:
            if self.logger:
                self.logger.close()
            self.lock.release()
            ddp.shutdown()

    def _own_run_folder(self) -> None:
        """Rank 0 takes the run folder's lock; every rank fails with its message when another process has it."""
        refusal: TwinGANError | None = None
        if self.dist.is_main:
            try:
                self.lock.acquire()
            except TwinGANError as exc:
                refusal = exc
        message = ddp.gather_objects(None if refusal is None else str(refusal), self.dist)[0]
        if refusal is not None:
            raise refusal
        if message is not None:
            raise ConfigError(message)

    def _run(self, stop: StopRequest) -> Path:
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
        self.folder.adopt_checkpoints(resume_path, self.images_seen)
        if self.dist.is_main:
            self.folder.truncate_log(self.images_seen)
            self.logger = RunLogger(self.folder, self.settings.tensorboard)
        end = self.schedule.total_images
        if self.settings.max_images is not None:
            end = min(end, self.settings.max_images)
        ckpt_every = self.settings.checkpoint_every_images
        sample_every = self.settings.samples_every_images
        bar = progress_bar(
            total=end,
            initial=min(self.images_seen, end),
            unit="img",
            dynamic_ncols=True,
            disable=not (self.dist.is_main and self.settings.progress_bar),
        )
        loader, loader_key = None, None
        last_path: Path | None = resume_path
        saved_at = self.images_seen if resume_path is not None else None
        last_log_time, last_log_images = time.perf_counter(), self.images_seen
        try:
            while self.images_seen < end:
                phase = self.schedule.phase_at(self.images_seen)
                resolution, alpha = self._set_progress(self.images_seen)
                if loader_key != (phase.resolution, phase.batch_size):
                    loader = batch_iterator(
                        self.datasets, self.orders, self.images_seen, phase.batch_size, resolution,
                        self.settings.num_workers, self.dist.rank, self.dist.world_size,
                        pin_memory=self.device.type == "cuda", labels=self.labels,
                    )
                    augment = Augment(resolution, **self.settings.augment)
                    loader_key = (phase.resolution, phase.batch_size)
                batches, labels = next(loader)
                try:
                    logs = self._train_step(batches, augment, alpha, labels)
                except _NonFinite as exc:
                    last_path = self._handle_divergence(str(exc), last_path)
                    saved_at = self.images_seen
                    loader, loader_key = None, None
                    continue
                before = self.images_seen
                step_images = phase.batch_size * self.dist.world_size
                self.images_seen += step_images
                self.step += 1
                self.ema.update(self.model, self.images_seen, step_images)
                bar.update(step_images)
                if self.step % self.settings.log_every_steps == 0 and self.logger:
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
                    last_path = self._save_checkpoint()
                    saved_at = self.images_seen
                if ddp.any_rank(stop.requested, self.dist, self.device):
                    if saved_at != self.images_seen:
                        self._check_ranks_in_sync()
                        last_path = self._save_checkpoint()
                    self.stopped_by = stop.signum or signal.SIGTERM  # (SIGTERM: another rank received it)
                    log.warning("stopped by %s at %d images; checkpoint %s written: continue with resume=auto",
                                signal.Signals(self.stopped_by).name, self.images_seen, last_path)
                    return last_path
        finally:
            bar.close()
        if last_path is None:  # a fresh run with nothing to train (train.max_images=0): say where it stands
            last_path = self._save_checkpoint()
        self._write_samples()
        return last_path

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
        policy = self.settings.nan_policy
        if self.logger:
            self.logger.log({"images": self.images_seen, "step": self.step, "event": "non-finite loss", "detail": message})
        limit = self.settings.max_rollbacks
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
        lr_factor = self.lr_factor * self.settings.rollback_lr_factor
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
