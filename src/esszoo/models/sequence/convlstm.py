"""ConvLSTM: an LSTM whose states are fields, for precipitation nowcasting.

Paper: Shi, Chen, Wang, Yeung, Wong & Woo (2015), "Convolutional LSTM network: a machine
learning approach for precipitation nowcasting" (NeurIPS), arXiv:1506.04214.

The cell (section 3.1, eq. 3): the input X_t, the hidden state H_t and the cell C_t are
fields (channels x rows x columns), and the LSTM's matrix products become convolutions (*),
so that the state of a point is computed from its neighbourhood:

    i_t = sigmoid(W_xi * X_t + W_hi * H_{t-1} + W_ci o C_{t-1} + b_i)
    f_t = sigmoid(W_xf * X_t + W_hf * H_{t-1} + W_cf o C_{t-1} + b_f)
    C_t = f_t o C_{t-1} + i_t o tanh(W_xc * X_t + W_hc * H_{t-1} + b_c)
    o_t = sigmoid(W_xo * X_t + W_ho * H_{t-1} + W_co o C_t + b_o)
    H_t = o_t o tanh(C_t)

with o the elementwise product (the peephole terms W_c o C of Graves' FC-LSTM).

The encoding-forecasting structure (section 3.2, figure 3): an encoding network of stacked
ConvLSTM layers reads the observed frames; its final states initialise a forecasting
network of the same layers, which runs on without input for as many steps as are
forecast; at each step all its layers' hidden states, concatenated, go through a 1x1
convolution to the predicted frame. Frames are first cut into patches (4 x 4 for the
Moving MNIST and radar experiments: a 64 x 64 frame becomes 16 x 16 points of 16 values).

Reference configuration: the best Moving MNIST network of Table 1, three layers of 128, 64
and 64 hidden states with 5 x 5 kernels, on 4 x 4 patches of one channel: 7,585,296
parameters counted here, the paper's "7.585M".

Departures: the peephole weights W_c are one per hidden channel (broadcast over the
field), where the paper's equations allow one per point; a weight per point would tie the
network to one grid, and the paper's count (7.585M) is the per-channel one. Any grid: frames
are padded up to a multiple of the patch (longitude wrapped under ``padding="earth"``) and
cropped back. Tensors are (batch, channels, time, rows, columns), as for `unet3d`, so the
two take the same windows of radar frames; ``horizon`` frames are forecast (default: as
many as are read).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.errors import ModelError
from esszoo.layers import check_grid, pad_to_multiple, set_padding
from esszoo.registry import Paper, register_model


class ConvLSTMCell(nn.Module):
    """One ConvLSTM layer (eq. 3): all four gates from one convolution of [X_t, H_{t-1}]."""

    def __init__(self, in_channels: int, hidden: int, kernel: int):
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel, padding=kernel // 2)
        self.peephole = nn.Parameter(torch.zeros(3, hidden, 1, 1))  # W_ci, W_cf, W_co

    def forward(
        self, x: torch.Tensor | None, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, in_channels, H, W), or None in the forecasting network (no input);
        state: (H_{t-1}, C_{t-1}), each (B, hidden, H, W)."""
        h, c = state
        stacked = h if x is None else torch.cat([x, h], dim=1)
        i, f, g, o = self.gates(stacked).chunk(4, dim=1)
        i = torch.sigmoid(i + self.peephole[0] * c)
        f = torch.sigmoid(f + self.peephole[1] * c)
        c = f * c + i * torch.tanh(g)
        o = torch.sigmoid(o + self.peephole[2] * c)
        return o * torch.tanh(c), c


@register_model(
    name="convlstm",
    family="sequence",
    tasks=("translation",),
    paper=Paper(
        authors="Shi, Chen, Wang, Yeung, Wong & Woo",
        year=2015,
        title="Convolutional LSTM network: a machine learning approach for precipitation "
        "nowcasting",
        venue="NeurIPS",
        arxiv="1506.04214",
    ),
    reference=dict(in_channels=1, out_channels=1, hidden=(128, 64, 64), kernel=5, patch=4),
    reference_params=7_585_296,
    reference_note="Table 1's best Moving MNIST network, counted here; the paper: 7.585M",
    small=dict(in_channels=2, out_channels=2, hidden=(4, 4), kernel=3, patch=2),
    example_input=(2, 2, 4, 12, 20),
    min_size=(1, 1, 1),
)
class ConvLSTM(nn.Module):
    """Encoding and forecasting ConvLSTM networks: frames (B, C, T, H, W) to the next."""

    def __init__(
        self,
        *,
        in_channels: int,
        out_channels: int,
        hidden: tuple[int, ...] | list[int] = (64, 64),
        kernel: int = 3,
        patch: int = 1,
        horizon: int | None = None,
        padding: str = "zeros",
    ):
        super().__init__()
        if not hidden or kernel % 2 == 0 or patch < 1:
            raise ModelError(
                f"convlstm needs at least one layer, an odd kernel and a patch >= 1, got "
                f"hidden={hidden}, kernel={kernel}, patch={patch}"
            )
        self.patch, self.horizon, self.out_channels = patch, horizon, out_channels
        self.wrap_longitude = padding == "earth"
        widths = list(hidden)
        inputs = [in_channels * patch**2, *widths[:-1]]
        self.encoder = nn.ModuleList(
            ConvLSTMCell(i, h, kernel) for i, h in zip(inputs, widths, strict=True)
        )
        # the forecasting network's first layer has no input: only the copied states
        self.forecaster = nn.ModuleList(
            ConvLSTMCell(0 if k == 0 else widths[k - 1], h, kernel) for k, h in enumerate(widths)
        )
        self.output = nn.Conv2d(sum(widths), out_channels * patch**2, 1)
        set_padding(self, padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_grid(x, (1, 1, 1), "convlstm")
        frames = x.shape[2]
        padded, crop = pad_to_multiple(x, self.patch, 2, wrap_longitude=self.wrap_longitude)
        batch, _, _, rows, columns = padded.shape
        points = (rows // self.patch, columns // self.patch)
        state = [(padded.new_zeros(batch, cell.hidden, *points),) * 2 for cell in self.encoder]
        for t in range(frames):  # the encoding network reads the observed frames
            below = F.pixel_unshuffle(padded[:, :, t], self.patch)  # (B, C p^2, H/p, W/p)
            for k, cell in enumerate(self.encoder):
                state[k] = cell(below, state[k])
                below = state[k][0]
        predicted = []
        for _ in range(self.horizon or frames):  # the forecasting network runs on
            below = None
            for k, cell in enumerate(self.forecaster):
                state[k] = cell(below, state[k])
                below = state[k][0]
            frame = self.output(torch.cat([h for h, _ in state], dim=1))
            predicted.append(F.pixel_shuffle(frame, self.patch))  # (B, C_out, H, W)
        return torch.stack(predicted, dim=2)[crop]  # (B, C_out, horizon, H, W)
