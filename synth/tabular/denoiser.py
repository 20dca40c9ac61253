"""The MLP denoiser: a diffusers model, so it saves and loads with `save_pretrained`."""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from torch import nn


class TabularDenoiser(ModelMixin, ConfigMixin):
    """Predicts the Gaussian noise of numeric features and the clean-category logits.

    Input: noisy numerics concatenated with one-hot noisy categories. The timestep (and the
    class label, for classifier-free guidance) enter as an added embedding, as in TabDDPM.
    Class index `num_labels` is the "no label" token used when the condition is dropped.
    """

    @register_to_config
    def __init__(
        self,
        n_num: int,
        num_classes: tuple[int, ...] | list[int] = (),
        num_labels: int = 0,
        hidden_dims: tuple[int, ...] | list[int] = (256, 256, 256),
        time_embedding_dim: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        d_in = n_num + sum(num_classes)
        width = hidden_dims[0]
        self.time_proj = Timesteps(time_embedding_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(time_embedding_dim, width)
        self.label_embedding = nn.Embedding(num_labels + 1, width) if num_labels > 0 else None
        self.input_proj = nn.Linear(d_in, width)
        layers: list[nn.Module] = []
        dims = [width, *hidden_dims]
        for a, b in zip(dims[:-1], dims[1:], strict=True):
            layers += [nn.Linear(a, b), nn.SiLU(), nn.Dropout(dropout)]
        self.mlp = nn.Sequential(*layers)
        self.output = nn.Linear(dims[-1], n_num + sum(num_classes))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        labels: torch.Tensor | None = None,
        groups: int = 1,
    ) -> torch.Tensor:
        """Rows in, predictions out. `groups` > 1 (DP-SGD's noise multiplicity): each run of
        `groups` consecutive rows is one example under several noise draws; the layers see
        them as [examples, draws, features], so Opacus computes one gradient per example."""
        if not self.training and len(timesteps) > 1 and bool((timesteps == timesteps[0]).all()):
            # sampling: one timestep for the whole batch, embedded once and broadcast (a
            # fifth of the forward pass on CPU when embedded row by row). Never in training:
            # DP-SGD's per-example gradients need every row's own embedding.
            timesteps = timesteps[:1]
        proj = self.time_proj(timesteps).to(x.dtype)
        if groups > 1:
            x = x.reshape(-1, groups, x.shape[-1])
            proj = proj.reshape(-1, groups, proj.shape[-1])
            labels = None if labels is None else labels.reshape(-1, groups)
        emb = self.time_embedding(proj)
        if self.label_embedding is not None:
            if labels is None:  # unconditional: the "no label" token
                labels = torch.full(
                    emb.shape[:-1], self.config.num_labels, dtype=torch.long, device=x.device
                )
            emb = emb + self.label_embedding(labels)
        h = self.input_proj(x) + emb
        out = self.output(self.mlp(torch.nn.functional.silu(h)))
        return out.reshape(-1, out.shape[-1])
