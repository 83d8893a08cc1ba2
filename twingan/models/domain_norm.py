"""Per-domain normalisation: the only place where TwinGAN's domains differ.

Convolution kernels are shared by all domains; a domain norm layer keeps, per
domain, its own affine parameters (gamma, beta) and, for batch normalisation,
its own running statistics. The domain of a forward pass selects which set is
used and updated; the others are untouched (no gradient, no running-stat update).

Which statistics normalise the activations is ``model.norm``:

* ``affine`` (the default): no statistics, only the per-domain gamma and beta;
* ``layer``: over each image's channels and space together (keeps the relative
  level of the channels, e.g. an image's colour cast);
* ``batch``: over the batch and space, with running statistics for inference (the
  original TwinGAN's choice, optionally batch-renormalised).

``affine`` and ``layer`` keep no running statistics, so a forward pass means the
same in training and inference and never depends on the rest of the batch. An
instance norm is not offered: it makes every layer blind to a shift of the whole
image's colours, so a translation cannot keep them (measured in BENCHMARKS.md).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

NORM_KINDS = ("affine", "layer", "batch")


class DomainNorm2d(nn.Module):
    """One (gamma, beta) per domain, over no statistics (``affine``) or each image's own (``layer``)."""

    def __init__(self, num_features: int, num_domains: int, kind: str = "affine", eps: float = 1e-5) -> None:
        super().__init__()
        if kind not in ("affine", "layer"):
            raise ValueError(f"a per-image domain norm is 'affine' or 'layer', got {kind!r}")
        self.kind = kind
        self.num_features = num_features
        self.num_domains = num_domains
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_domains, num_features))
        self.bias = nn.Parameter(torch.zeros(num_domains, num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, domains={self.num_domains}, kind={self.kind}"

    def forward(
        self,
        x: torch.Tensor,
        domain: int,
        modulation: tuple[torch.Tensor, torch.Tensor] | None = None,
        stat_set: int = 0,
    ) -> torch.Tensor:
        """Normalise ``x`` and apply ``domain``'s gamma and beta (plus ``modulation`` offsets, each (N, C))."""
        _check_domain(domain, self.num_domains)
        x_hat = F.layer_norm(x, x.shape[1:], eps=self.eps) if self.kind == "layer" else x
        return _affine(x_hat, self.weight[domain], self.bias[domain], modulation).to(x.dtype)


class DomainBatchNorm2d(nn.Module):
    """Batch norm with one (gamma, beta, running mean, running var) set per domain.

    Args:
        num_features: channels.
        num_domains: how many domains (any N >= 1).
        momentum: running-statistics momentum, as in ``nn.BatchNorm2d``.
        renorm: use batch renormalisation (Ioffe 2017), as the original TwinGAN did:
            in training the batch-normalised value is corrected by r = sigma_B / sigma
            and d = (mu_B - mu) / sigma (clipped to rmax, dmax, no gradient), so
            training and inference see the same normalisation.
        sync: when torch.distributed is initialised with several ranks, compute
            batch statistics over all ranks (a SyncBatchNorm for domain layers);
            the all-reduce is differentiable.
        stat_sets: running-statistics sets per domain. The generator keeps a second
            set for faces drawn from noise, whose activations (no skip features)
            differ from a translation's; gamma and beta stay shared.
    """

    def __init__(
        self,
        num_features: int,
        num_domains: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        renorm: bool = False,
        rmax: float = 3.0,
        dmax: float = 5.0,
        sync: bool = False,
        stat_sets: int = 1,
    ) -> None:
        super().__init__()
        if stat_sets < 1:
            raise ValueError(f"stat_sets must be >= 1, got {stat_sets}")
        self.kind = "batch"
        self.stat_sets = stat_sets
        self.num_features = num_features
        self.num_domains = num_domains
        self.eps = eps
        self.momentum = momentum
        self.renorm = renorm
        self.rmax = rmax
        self.dmax = dmax
        self.sync = sync
        self.weight = nn.Parameter(torch.ones(num_domains, num_features))
        self.bias = nn.Parameter(torch.zeros(num_domains, num_features))
        self.register_buffer("running_mean", torch.zeros(num_domains * stat_sets, num_features))
        self.register_buffer("running_var", torch.ones(num_domains * stat_sets, num_features))

    def extra_repr(self) -> str:
        return f"{self.num_features}, domains={self.num_domains}, renorm={self.renorm}, sync={self.sync}"

    def forward(
        self,
        x: torch.Tensor,
        domain: int,
        modulation: tuple[torch.Tensor, torch.Tensor] | None = None,
        stat_set: int = 0,
    ) -> torch.Tensor:
        """Normalise with ``domain``'s statistics (set ``stat_set``) and affine parameters.

        ``modulation`` = (dgamma, dbeta), each (N, C): per-sample offsets added to the
        domain's gamma and beta (gamma_d + dgamma, beta_d + dbeta), which is how a style
        code or an attribute vector conditions the generator.
        """
        _check_domain(domain, self.num_domains)
        if not 0 <= stat_set < self.stat_sets:
            raise IndexError(f"statistics set {stat_set} out of range for {self.stat_sets} sets")
        slot = stat_set * self.num_domains + domain
        if modulation is not None:
            x_hat = self._normalise(x, slot, None, None)
            return _affine(x_hat, self.weight[domain], self.bias[domain], modulation).to(x.dtype)
        return self._normalise(x, slot, self.weight[domain], self.bias[domain])

    def _normalise(
        self, x: torch.Tensor, slot: int, gamma: torch.Tensor | None, beta: torch.Tensor | None
    ) -> torch.Tensor:
        if not self.training:
            return F.batch_norm(
                x, self.running_mean[slot], self.running_var[slot], gamma, beta, False, 0.0, self.eps
            )
        if not self.renorm and not self._syncing():
            return F.batch_norm(
                x, self.running_mean[slot], self.running_var[slot], gamma, beta, True, self.momentum, self.eps
            )
        return self._manual_train_forward(x, slot, gamma, beta)

    def _syncing(self) -> bool:
        return self.sync and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def _manual_train_forward(
        self, x: torch.Tensor, slot: int, gamma: torch.Tensor | None, beta: torch.Tensor | None
    ) -> torch.Tensor:
        xf = x.float()
        count = torch.tensor(float(x.shape[0] * x.shape[2] * x.shape[3]), device=x.device)
        sums = torch.stack([xf.sum(dim=(0, 2, 3)), xf.pow(2).sum(dim=(0, 2, 3))])
        if self._syncing():
            from torch.distributed.nn.functional import all_reduce

            sums = all_reduce(sums)
            count = count * dist.get_world_size()
        mean = sums[0] / count
        var = (sums[1] / count - mean.pow(2)).clamp_min(0.0)
        std = torch.sqrt(var + self.eps)
        x_hat = (xf - mean[None, :, None, None]) / std[None, :, None, None]
        with torch.no_grad():
            running_mean = self.running_mean[slot]
            running_var = self.running_var[slot]
            if self.renorm:
                running_std = torch.sqrt(running_var + self.eps)
                r = (std / running_std).clamp(1.0 / self.rmax, self.rmax)
                d = ((mean - running_mean) / running_std).clamp(-self.dmax, self.dmax)
            unbiased = var * count / (count - 1).clamp_min(1.0)
            running_mean.lerp_(mean.detach(), self.momentum)
            running_var.lerp_(unbiased.detach(), self.momentum)
        if self.renorm:
            x_hat = x_hat * r[None, :, None, None] + d[None, :, None, None]
        if gamma is not None and beta is not None:
            x_hat = x_hat * gamma[None, :, None, None] + beta[None, :, None, None]
        return x_hat.to(x.dtype)


def _check_domain(domain: int, num_domains: int) -> None:
    if not 0 <= domain < num_domains:
        raise IndexError(f"domain index {domain} out of range for {num_domains} domains")


def _affine(
    x_hat: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor,
    modulation: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """x_hat * gamma + beta, per channel; with ``modulation`` per sample: (gamma + dgamma), (beta + dbeta).

    One fused multiply-add: at large resolutions the activations are memory-bound.
    """
    if modulation is None:
        return torch.addcmul(beta[None, :, None, None], x_hat, gamma[None, :, None, None])
    dgamma, dbeta = modulation
    g = gamma[None, :] + dgamma
    b = beta[None, :] + dbeta
    return torch.addcmul(b[:, :, None, None], x_hat, g[:, :, None, None])
