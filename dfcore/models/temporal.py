"""Temporal heads: a video judged by the sequence of its frames' embeddings, not by the mean of independent scores.

A head reads per-frame embeddings ``x`` (batch x T x D, from the frozen phase-2 backbone) and a mask (batch x T,
True where a frame has a face) and returns two-class logits and one weight per frame (what it based the verdict
on: softmax attention over the frames, zero at masked ones). Three encoders, one pooling:

- ``lstm``, ``gru``: a bidirectional recurrent layer over the frames (the seeds' EfficientNet + LSTM/GRU);
- ``attention``: a temporal convolution (each frame beside its neighbours), then a small transformer encoder over
  the frames with learned position embeddings;

then attention pooling over the encoded frames (a learned scorer, softmax over the unmasked frames) and a linear
classifier. Masked frames are moved behind the unmasked ones before encoding, so a video with faceless frames or
fewer frames is read exactly as the sequence of its faces (padding never changes a verdict).

torch's ``nn.LSTM``/``nn.GRU``/``nn.TransformerEncoderLayer`` do the sequence work; what is written here is the
masking and the pooling, which no library packages for this shape of input.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

TEMPORAL_HEADS = ("lstm", "gru", "attention")


def compact(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``x`` and ``mask`` with every sequence's unmasked frames moved to the front (in order) and the
    order used (``x[b, order[b]]``); masked frames are zeroed."""
    order = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)
    x = torch.take_along_dim(x, order[..., None], dim=1)
    mask = torch.take_along_dim(mask, order, dim=1)
    return x * mask[..., None], mask, order


class TemporalHead(nn.Module):
    """A sequence head over frame embeddings (see the module's docstring)."""

    def __init__(self, kind: str, in_dim: int, *, hidden: int = 128, max_frames: int = 64, dropout: float = 0.1,
                 heads: int = 4, layers: int = 1):
        super().__init__()
        if kind not in TEMPORAL_HEADS:
            raise ValueError(f"temporal head must be one of {TEMPORAL_HEADS}, got {kind!r}")
        self.kind, self.in_dim, self.max_frames = kind, in_dim, max_frames
        # frozen embeddings standardised per value with the training frames' statistics (`fit_standardisation`):
        # what tells a video's frames apart is often a small part of each value's range
        self.register_buffer("feature_mean", torch.zeros(in_dim))
        self.register_buffer("feature_std", torch.ones(in_dim))
        self.project = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden))
        if kind == "attention":
            self.position = nn.Parameter(torch.zeros(1, max_frames, hidden))
            nn.init.trunc_normal_(self.position, std=0.02)
            layer = nn.TransformerEncoderLayer(hidden, heads, dim_feedforward=2 * hidden, dropout=dropout,
                                               batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
            # neighbouring frames compared before attention (a frame-to-frame change is one step for a convolution,
            # several for attention alone: on flicker, 0.73 AUC after 150 steps without it, above 0.95 with it)
            self.local = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1)
            width = hidden
        else:
            recurrent = nn.LSTM if kind == "lstm" else nn.GRU
            self.encoder = recurrent(hidden, hidden // 2, num_layers=layers, batch_first=True, bidirectional=True)
            width = hidden
        self.score = nn.Sequential(nn.Linear(width, width // 2), nn.Tanh(), nn.Linear(width // 2, 1))
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, 2))

    @torch.no_grad()
    def fit_standardisation(self, frames: torch.Tensor) -> None:
        """Sets the per-value mean and standard deviation of the embeddings from the training ``frames`` (N x D)."""
        self.feature_mean.copy_(frames.mean(0))
        self.feature_std.copy_(frames.std(0).clamp(min=1e-6))

    def encode(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Returns the encoded frames (batch x T x width) of compacted ``x``."""
        h = self.project((x - self.feature_mean) / self.feature_std * mask[..., None])
        if self.kind == "attention":
            if h.shape[1] > self.max_frames:
                raise ValueError(f"{h.shape[1]} frames: this head reads at most {self.max_frames}")
            h = h + self.local((h * mask[..., None]).transpose(1, 2)).transpose(1, 2)
            return self.encoder(h + self.position[:, :h.shape[1]], src_key_padding_mask=~mask)
        lengths = mask.sum(1).clamp(min=1).cpu()
        packed = pack_padded_sequence(h, lengths, batch_first=True, enforce_sorted=False)
        out, _ = self.encoder(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=h.shape[1])[0]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns the two-class logits (batch x 2) and each frame's weight (batch x T, in the input's order)."""
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        mask = mask.bool()
        empty = ~mask.any(1)
        if empty.any():  # a clip without any face: read as one blank frame (its verdict is the prior)
            mask = mask.clone()
            mask[empty, 0] = True
        packed, packed_mask, order = compact(x, mask)
        h = self.encode(packed, packed_mask)
        scores = self.score(h).squeeze(-1).masked_fill(~packed_mask, float("-inf"))
        weights = scores.softmax(dim=1)
        logits = self.classifier((weights[..., None] * h).sum(1))
        # the weights back in the frames' own order
        return logits, torch.zeros_like(weights).scatter(1, order, weights)


def build_temporal_head(state: dict) -> TemporalHead:
    """Returns the head a temporal checkpoint describes (``head``, ``in_dim``, ``hidden``, ``max_frames``), with its
    weights."""
    head = TemporalHead(state["head"], state["in_dim"], hidden=state["hidden"], max_frames=state["max_frames"])
    head.load_state_dict(state["model"])
    return head.eval()
