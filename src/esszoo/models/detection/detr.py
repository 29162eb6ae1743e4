"""DETR: detection as direct set prediction, with a Transformer and no hand-made anchors.

Paper: Carion, Massa, Synnaeve, Usunier, Kirillov & Zagoruyko (2020), "End-to-End Object
Detection with Transformers", ECCV, arXiv:2005.12872. A CNN reads the image, a Transformer
encoder-decoder turns a fixed set of N learned object queries into N predictions at once,
and a one-to-one (Hungarian) matching of predictions to the true objects makes the loss, so
the network needs neither anchors nor non-maximum suppression: each object has one query.
The matching and the loss belong to the task (`esszoo.tasks.detection`); this file is the
network of figure 2 (and figure 10, its Transformer in detail).

Paper to code (``DETR``):

- Section 3.2, backbone: a ResNet maps the image (C_in, H, W) to f of 2048 channels at
  H/32 x W/32 (``backbone.stages(x)[-1]``). The zoo's ResNet here, any depth; with
  ``dilation=True`` the last stage trades its stride for a dilation (the paper's DC5
  models, stride 16).
- Section 4 and the official code (``models/backbone.py``): the backbone's batch norms are
  frozen (`esszoo.layers.normalization.FrozenBatchNorm2d`, ``frozen_batch_norm``) and its
  stem and first stage are not trained (``frozen_stages=1``): these layers hold ImageNet's
  generic edges and textures. Here, with no ImageNet weights, both are options; trained
  from scratch a ResNet needs its batch norms (``frozen_batch_norm=False``,
  ``frozen_stages=0``); taken from a trained zoo classifier (``init_from``), the
  paper's setting applies.
- Section 3.2, Transformer encoder: a 1x1 convolution reduces f to d channels
  (``input_proj``), the map is flattened to a sequence of H/32 * W/32 tokens, and the fixed
  sine encodings of the rows and columns (`esszoo.layers.attention.sine_positions_2d`) are
  added to the queries and keys of every attention layer (figure 10), not to the values.
  Six post-norm layers of d = 256, 8 heads, feed-forward 2,048, dropout 0.1
  (`esszoo.layers.transformer.TransformerEncoderLayer`).
- Section 3.2, decoder: N = 100 learned object queries (``query_embed``) are the decoder's
  positional encodings, added at every layer; the decoder's input starts at zero; the
  queries attend to each other (no causal mask: the N objects are decoded in parallel)
  and to the encoder's output with its encodings. Six post-norm layers, then a shared
  layer norm (``decoder_norm``).
- Section 3.2, prediction heads: a linear layer to the K classes plus "no object"
  (``class_embed``, logits) and a 3-layer perceptron of width d with ReLU to the box's
  normalized centre and size (cx, cy, w, h), through a sigmoid (``bbox_embed``).
- Section 3.2, auxiliary decoding losses: the same heads (shared parameters) read the
  output of every decoder layer through the shared layer norm; in training mode the model
  returns the last layer's predictions and then those of layers 1..5, for the task to add
  a Hungarian loss at each.
- Section 4, initialization: Xavier's uniform initialization of the Transformer's weights
  (the official code's ``_reset_parameters``); PyTorch's defaults for the heads.

Output. One tensor (batch, N, K + 1 + 4): the K + 1 class logits, then the box (cx, cy, w,
h), each in [0, 1] of the input grid's width and height (column and row), so that a model
exports with one output as every zoo model does. `split_predictions` takes it apart.

Departures, and why:

- The official attention is ``nn.MultiheadAttention``, whose three input projections are one
  3d x d matrix under one Xavier bound; the zoo's attention (`esszoo.layers.attention`)
  holds them as three d x d layers, each initialized by Xavier's bound for its own shape.
  The parameters are the same in number and role.
- No padding mask: the official code pads images of a batch to the largest and masks the
  padding; Earth grids of a data set share one shape, so nothing is padded.
- One learning rate: the official code trains the backbone at a tenth of the Transformer's
  (1e-5 against 1e-4); esszoo's optimizer takes one rate for the network (the recipe's
  ``trainer.lr``), and a backbone taken from a trained run may be frozen instead
  (``frozen_stages``).
- No pretrained weights: the paper starts the backbone from ImageNet and trains for 500
  epochs on COCO; esszoo ships no weights from elsewhere, so the backbone starts from the
  zoo's initialization or from a zoo run (``init_from``).

Reference configuration (the card's count): ResNet-50, frozen batch norm, stem and layer1
frozen, 91 COCO classes plus no-object, 100 queries, 6 + 6 layers, d = 256, feed-forward
2,048: 41,302,368 trainable parameters, the figure the official ``main.py`` prints (it
counts those that require gradients): 23,232,512 in ResNet-50's layer2 to layer4,
17,363,456 in the Transformer, and 706,400 in the input projection, the queries and the
heads.
"""

from __future__ import annotations

import torch
from torch import nn

from esszoo.layers.attention import sine_positions_2d
from esszoo.layers.normalization import freeze_batch_norm
from esszoo.layers.transformer import TransformerDecoderLayer, TransformerEncoderLayer
from esszoo.models.cnn import resnet
from esszoo.registry import Paper, register_model

BOX = 4  # (cx, cy, w, h)
BACKBONE_STAGES = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")


class BoxHead(nn.Module):
    """The box FFN of section 3.2: 3 linear layers of width d with ReLU, then a sigmoid."""

    def __init__(self, width: int, layers: int = 3):
        super().__init__()
        sizes = [width] * layers + [BOX]
        self.layers = nn.ModuleList(
            nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index, layer in enumerate(self.layers):
            x = layer(x)
            if index < len(self.layers) - 1:
                x = torch.relu(x)
        return x.sigmoid()  # (batch, N, 4): normalized (cx, cy, w, h)


@register_model(
    name="detr",
    family="detection",
    tasks=("detection",),
    paper=Paper(
        authors="Carion, Massa, Synnaeve, Usunier, Kirillov & Zagoruyko",
        year=2020,
        title="End-to-End Object Detection with Transformers",
        venue="ECCV",
        arxiv="2005.12872",
    ),
    reference=dict(in_channels=3, num_classes=91),
    reference_params=41_302_368,
    reference_note="DETR-R50 of the official code (facebookresearch/detr): ResNet-50 with "
    "frozen batch norm, its stem and layer1 frozen, 91 COCO class ids plus no-object, 100 "
    "queries, 6 + 6 layers, d 256, 8 heads, feed-forward 2,048. Counts the parameters that "
    "train, as the official main.py prints (the paper: 41M): 23,232,512 in layer2-4, "
    "17,363,456 in the Transformer, 706,400 in the projection, queries and heads; the frozen "
    "stem and layer1 (222,400) and the frozen batch-norm values are not counted",
    small=dict(
        in_channels=3,
        num_classes=3,
        backbone="resnet18",
        width=8,
        queries=6,
        hidden=16,
        heads=2,
        encoder_layers=2,
        decoder_layers=2,
        feedforward=32,
    ),
    example_input=(2, 3, 40, 56),
    min_size=resnet.MIN_SIZE,
)
class DETR(nn.Module):
    """DETR (Carion et al. 2020): a set of boxes from a ResNet and a Transformer.

    Figure 2: the backbone, a Transformer encoder-decoder over learned object queries, and
    class and box heads; a set of `queries` boxes per image, matched one to one in training.

    ``num_classes`` counts the object classes; the class head adds "no object". Trained from
    scratch, give ``frozen_batch_norm=False, frozen_stages=0``; the defaults are the paper's,
    for a backbone taken from a trained run (``init_from``).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        backbone: str = "resnet50",
        width: int = 64,
        dilation: bool = False,
        frozen_batch_norm: bool = True,
        frozen_stages: int = 1,
        queries: int = 100,
        hidden: int = 256,
        heads: int = 8,
        encoder_layers: int = 6,
        decoder_layers: int = 6,
        feedforward: int = 2048,
        dropout: float = 0.1,
        aux_loss: bool = True,
        padding: str = "zeros",
    ):
        super().__init__()
        if not 0 <= frozen_stages <= 4:
            raise ValueError(
                f"frozen_stages is 0 (none) to 4 (the whole backbone), got {frozen_stages}"
            )
        self.num_classes = num_classes
        self.aux_loss = aux_loss
        self.backbone = resnet.builder(backbone)(
            in_channels=in_channels,
            num_classes=1,
            width=width,
            replace_stride_with_dilation=(False, False, dilation),
            padding=padding,
        )
        self.backbone.fc = nn.Identity()  # f is read before the pooling and classifier
        if frozen_batch_norm:
            freeze_batch_norm(self.backbone)
        for stage in BACKBONE_STAGES[: frozen_stages + 2 if frozen_stages else 0]:
            getattr(self.backbone, stage).requires_grad_(False)

        self.input_proj = nn.Conv2d(self.backbone.num_features, hidden, kernel_size=1)
        layer = dict(hidden=feedforward, dropout=dropout, activation="relu", norm_first=False)
        self.encoder = nn.ModuleList(
            TransformerEncoderLayer(hidden, heads, **layer) for _ in range(encoder_layers)
        )
        self.decoder = nn.ModuleList(
            TransformerDecoderLayer(hidden, heads, **layer) for _ in range(decoder_layers)
        )
        self.decoder_norm = nn.LayerNorm(hidden)
        for part in (self.encoder, self.decoder):
            for parameter in part.parameters():
                if parameter.dim() > 1:
                    nn.init.xavier_uniform_(parameter)

        self.query_embed = nn.Embedding(queries, hidden)
        self.class_embed = nn.Linear(hidden, num_classes + 1)  # + "no object"
        self.bbox_embed = BoxHead(hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        # x: (batch, C_in, H, W) -> f: (batch, 2048, H/32, W/32) for ResNet-50
        features = self.backbone.stages(x)[-1]
        memory = self.input_proj(features)  # (batch, d, h, w)
        batch, hidden, height, width = memory.shape
        position = sine_positions_2d(height, width, hidden).to(memory)  # (d, h, w)
        memory = memory.flatten(2).transpose(1, 2)  # (batch, h * w, d)
        position = position.flatten(1).T.expand(batch, -1, -1)  # (batch, h * w, d)
        for layer in self.encoder:
            memory = layer(memory, position=position)

        queries = self.query_embed.weight.expand(batch, -1, -1)  # (batch, N, d)
        target = torch.zeros_like(queries)
        outputs = []
        for layer in self.decoder:
            target = layer(target, memory, position=queries, memory_position=position, causal=False)
            outputs.append(self._predict(self.decoder_norm(target)))
        if self.training and self.aux_loss:
            return (outputs[-1], *outputs[:-1])  # the last layer's, then layers 1 .. L-1
        return outputs[-1]

    def _predict(self, decoded: torch.Tensor) -> torch.Tensor:
        # (batch, N, d) -> (batch, N, K + 1 + 4)
        return torch.cat([self.class_embed(decoded), self.bbox_embed(decoded)], dim=-1)


def split_predictions(packed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """DETR's packed output (..., N, K + 1 + 4) as class logits (..., N, K + 1) and boxes
    (..., N, 4) in normalized (cx, cy, w, h)."""
    return packed[..., :-BOX], packed[..., -BOX:]
