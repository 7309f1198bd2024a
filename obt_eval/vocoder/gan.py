"""One HiFi-GAN update: the models, optimisers and schedulers of a run, and their state for checkpoints.

The update follows jik876/hifi-gan's train.py: discriminators first on (real, detached fake), then
the generator on adversarial + 2 x feature-matching + 45 x mel-L1 (+ the duration loss). Real and
generated audio go through each discriminator in one concatenated batch.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from obt_eval.vocoder.config import VocoderConfig
from obt_eval.vocoder.data import dedup_batch
from obt_eval.vocoder.discriminators import MultiPeriodDiscriminator, MultiScaleDiscriminator
from obt_eval.vocoder.generator import UnitGenerator
from obt_eval.vocoder.losses import (
    discriminator_loss,
    feature_matching_loss,
    generator_adv_loss,
    mel_spectrogram,
    split_batch,
)
from obt_eval.vocoder.runtime import DistInfo, no_sync

STATE_KEYS = ("generator", "mpd", "msd", "optim_g", "optim_d", "sched_g", "sched_d")


def _grad_norm(parameters) -> torch.Tensor:
    """Total L2 norm of the gradients, left on the device (NaN or inf if any gradient is)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads) if grads else torch.zeros(())


class _TrainingGenerator(nn.Module):
    """The generator and its duration head in one forward, so DDP sees every parameter used."""

    def __init__(self, generator: UnitGenerator):
        super().__init__()
        self.generator = generator

    def forward(self, units, speaker, f0, dedup_units):
        wave = self.generator(units, speaker, f0)
        log_dur = None
        if self.generator.duration is not None:
            log_dur = self.generator.duration(self.generator.conditioning(dedup_units, speaker))
        return wave, log_dur


class GanTrainer:
    def __init__(self, cfg: VocoderConfig, device: torch.device, info: DistInfo, steps_per_epoch: int):
        tc = cfg.train
        self.cfg = cfg
        self.device = device
        self.info = info
        torch.manual_seed(tc.seed)  # same initial weights for every encoder of an A/B comparison
        self.generator = UnitGenerator(cfg.generator).to(device)
        self.mpd = MultiPeriodDiscriminator(cfg.discriminator).to(device)
        self.msd = MultiScaleDiscriminator(cfg.discriminator).to(device)
        betas = (tc.adam_b1, tc.adam_b2)
        self.optim_g = torch.optim.AdamW(self.generator.parameters(), tc.learning_rate, betas=betas,
                                         weight_decay=tc.weight_decay)
        self.optim_d = torch.optim.AdamW([*self.mpd.parameters(), *self.msd.parameters()], tc.learning_rate,
                                         betas=betas, weight_decay=tc.weight_decay)
        # the recipe decays by lr_decay once per epoch; here the same decay is spread over its steps
        gamma = tc.lr_decay ** (1.0 / max(1, steps_per_epoch))
        self.sched_g = torch.optim.lr_scheduler.ExponentialLR(self.optim_g, gamma)
        self.sched_d = torch.optim.lr_scheduler.ExponentialLR(self.optim_d, gamma)

        self.g_run: nn.Module = _TrainingGenerator(self.generator)
        self.mpd_run: nn.Module = self.mpd
        self.msd_run: nn.Module = self.msd
        if info.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            self.g_run, self.mpd_run, self.msd_run = (DDP(m, device_ids=ids)
                                                      for m in (self.g_run, self.mpd, self.msd))
        self.use_amp = tc.amp and device.type == "cuda"
        self.grad_norms: dict[str, float] = {}  # of the last step: a NaN/inf here stops training (train.py)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
            torch.backends.cudnn.benchmark = True

    def _autocast(self):
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_amp)

    def state_dict(self) -> dict:
        return {key: getattr(self, key).state_dict() for key in STATE_KEYS}

    def load_state_dict(self, state: dict) -> None:
        for key in STATE_KEYS:
            getattr(self, key).load_state_dict(state[key])

    @property
    def lr(self) -> float:
        return float(self.sched_g.get_last_lr()[0])

    def step(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One discriminator and one generator update on a batch; returns the losses."""
        tc, cfg = self.cfg.train, self.cfg
        y, units = batch["audio"], batch["units"]
        spk = batch["speaker"] if cfg.generator.num_speakers else None
        dedup_u = dedup_d = dedup_m = None
        if cfg.generator.duration_predictor:
            dedup_u, dedup_d, dedup_m = dedup_batch(units)
        with self._autocast():
            y_hat, log_dur = self.g_run(units, spk, batch.get("f0"), dedup_u)
        y_hat = y_hat.float()
        y_mel = mel_spectrogram(y, cfg.mel)
        y_hat_mel = mel_spectrogram(y_hat, cfg.mel)

        self.optim_d.zero_grad(set_to_none=True)
        both = torch.cat([y, y_hat.detach()])
        with self._autocast():
            rf, gf, _, _ = split_batch(self.mpd_run(both), len(y))
            rs, gs, _, _ = split_batch(self.msd_run(both), len(y))
        loss_d = discriminator_loss(rf, gf) + discriminator_loss(rs, gs)
        loss_d.backward()
        grad_d = _grad_norm([*self.mpd.parameters(), *self.msd.parameters()])
        self.optim_d.step()

        self.optim_g.zero_grad(set_to_none=True)
        # discriminator gradients of the generator phase are discarded, so skip their all-reduce
        sync = contextlib.nullcontext() if self.info.world == 1 else no_sync(self.mpd_run, self.msd_run)
        with sync:
            both = torch.cat([y, y_hat])
            with self._autocast():
                _, gf, rff, gff = split_batch(self.mpd_run(both), len(y))
                _, gs, rfs, gfs = split_batch(self.msd_run(both), len(y))
            loss_mel = F.l1_loss(y_hat_mel, y_mel)
            loss_adv = generator_adv_loss(gf) + generator_adv_loss(gs)
            loss_fm = feature_matching_loss(rff, gff) + feature_matching_loss(rfs, gfs)
            loss_dur = y.new_zeros(())
            if log_dur is not None and dedup_m.any():
                target = torch.log(dedup_d.float() + 1)  # fairseq trains on log(1 + frames)
                loss_dur = F.mse_loss(log_dur.float()[dedup_m], target[dedup_m])
            loss_g = loss_adv + tc.lambda_fm * loss_fm + tc.lambda_mel * loss_mel + tc.lambda_duration * loss_dur
            loss_g.backward()
        grad_g = _grad_norm(self.generator.parameters())
        self.optim_g.step()
        self.sched_g.step()
        self.sched_d.step()
        # read with the losses (one device sync per step, as before); train.py stops on NaN/inf
        self.grad_norms = {"grad_norm_g": grad_g.item(), "grad_norm_d": grad_d.item()}
        return {"loss_g": loss_g.item(), "loss_d": loss_d.item(), "mel_l1": loss_mel.item(),
                "adv": loss_adv.item(), "fm": loss_fm.item(), "duration": loss_dur.item()}
