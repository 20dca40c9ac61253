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
        self, x: torch.Tensor, timesteps: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        if len(timesteps) > 1 and bool((timesteps == timesteps[0]).all()):
            # sampling: one timestep for the whole batch, embedded once and broadcast (a
            # fifth of the forward pass on CPU when embedded row by row)
            timesteps = timesteps[:1]
        emb = self.time_embedding(self.time_proj(timesteps).to(x.dtype))
        if self.label_embedding is not None:
            if labels is None:  # unconditional: the "no label" token
                labels = torch.full_like(timesteps, self.config.num_labels, dtype=torch.long)
            emb = emb + self.label_embedding(labels)
        h = self.input_proj(x) + emb
        return self.output(self.mlp(torch.nn.functional.silu(h)))
