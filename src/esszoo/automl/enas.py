"""ENAS: efficient neural architecture search by sharing parameters (Pham, Guan, Zoph, Le &
Dean 2018, ICML, arXiv:1802.03268).

NAS with reinforcement learning trains every sampled network from scratch; ENAS samples
them as subgraphs of one large graph whose weights they share, so that a sample costs a
minibatch instead of a training. Two parties take turns (section 2.2):

- the shared weights w, trained on the training half of the data, each minibatch through
  a cell pair the controller samples afresh (SGD with Nesterov momentum, learning rate
  0.05 annealed by cosine to 0.0005, weight decay 1e-4, gradients clipped at norm 5, as
  the authors' micro search runs);
- the controller, an LSTM (2 layers of 32, the authors' code) that samples a cell node by
  node (section 2.3, "designing convolutional cells"): for each intermediate node two
  previous nodes, by attention over the nodes' LSTM states (the pointer of the authors'
  code), and an operation for each. Its logits pass through C tanh(logits / T) with the
  code's C = 1.10 for inputs and 1.10 / 2.5 for operations. It is trained by REINFORCE
  (Adam, 0.0035) on the accuracy of the sampled cells on a validation minibatch (for
  tasks other than classification: minus the validation loss), with a moving-average
  baseline (decay 0.99), the entropy of the sample added to the reward with weight 1e-4,
  the gradients of 10 samples averaged per step and 30 steps after each epoch of w.

At the end (section 3.2) several cells are sampled from the trained policy, scored on one
validation minibatch, and the best is retrained from scratch (`esszoo.models.nas.darts`).

Scaled down and changed, and why: the supernet is DARTS's (`esszoo.automl.darts`), its
cells 4 intermediate nodes (ENAS: 5) and its operations those of DARTS that ENAS also has
(separable convolutions 3x3 and 5x5, average and max pooling, identity), so that the cells
of the two methods are trained and compared in one network and retrained by one model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from esszoo.automl.darts import STEPS
from esszoo.models.nas.darts import Genotype

OPERATIONS = ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "skip_connect")
TANH_CONSTANT = 1.10
OP_TANH_REDUCE = 2.5


class Controller(nn.Module):
    """Section 2.3: an LSTM that samples a normal and a reduction cell, node by node."""

    def __init__(self, hidden: int = 32, layers: int = 2, operations: tuple[str, ...] = OPERATIONS):
        super().__init__()
        self.operations = operations
        self.hidden = hidden
        self.lstm = nn.LSTM(hidden, hidden, layers)
        self.start = nn.Parameter(torch.zeros(1, 1, hidden))  # the first input, learned
        self.op_embedding = nn.Embedding(len(operations), hidden)
        self.op_logits = nn.Linear(hidden, len(operations))
        # attention over earlier nodes: v . tanh(W_node h_node + W_query h)
        self.w_node = nn.Linear(hidden, hidden, bias=False)
        self.w_query = nn.Linear(hidden, hidden, bias=False)
        self.v = nn.Linear(hidden, 1, bias=False)
        for parameter in self.parameters():  # uniform in +-0.1, as the authors start it
            nn.init.uniform_(parameter, -0.1, 0.1)

    def _cell(self, state: tuple | None, inputs: torch.Tensor) -> tuple:
        """One cell's pairs, and the log probability and entropy of drawing them."""
        anchors, pairs = [], []
        log_prob = entropy = torch.zeros(())
        for _ in range(2):  # the cell's two input nodes: their states, from empty inputs
            output, state = self.lstm(inputs, state)
            anchors.append(output[0, 0])
            inputs = torch.zeros_like(inputs)
        for _ in range(STEPS):
            keys = self.w_node(torch.stack(anchors))  # (nodes so far, hidden)
            for _ in range(2):
                output, state = self.lstm(inputs, state)
                query = output[0, 0]
                logits = self.v(torch.tanh(keys + self.w_query(query))).squeeze(-1)
                source, lp, h = _draw(TANH_CONSTANT * torch.tanh(logits))
                inputs = anchors[source].view(1, 1, -1)
                output, state = self.lstm(inputs, state)
                logits = self.op_logits(output[0, 0])
                op, lp_op, h_op = _draw(TANH_CONSTANT / OP_TANH_REDUCE * torch.tanh(logits))
                inputs = self.op_embedding.weight[op].view(1, 1, -1)
                pairs.append((self.operations[op], source))
                log_prob, entropy = log_prob + lp + lp_op, entropy + h + h_op
            output, state = self.lstm(inputs, state)
            anchors.append(output[0, 0])
        return tuple(pairs), log_prob, entropy, state, inputs

    def sample(self) -> tuple[Genotype, torch.Tensor, torch.Tensor]:
        """A normal and a reduction cell; the log probability and entropy of the draw."""
        normal, lp_n, h_n, state, inputs = self._cell(None, self.start)
        reduce, lp_r, h_r, _, _ = self._cell(state, inputs)
        concat = tuple(range(2, 2 + STEPS))
        genotype = Genotype(
            normal=normal, normal_concat=concat, reduce=reduce, reduce_concat=concat
        )
        return genotype, lp_n + lp_r, h_n + h_r


def _draw(logits: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    log_p = F.log_softmax(logits, dim=-1)
    index = int(torch.multinomial(log_p.exp(), 1))
    return index, log_p[index], -(log_p.exp() * log_p).sum()


class Reinforce:
    """REINFORCE with a moving-average baseline (Williams 1992; the baseline as ENAS and
    NAS with RL keep it): the gradient of (reward - baseline) log p(sample)."""

    def __init__(self, params: list[nn.Parameter], lr: float, decay: float):
        self.optimizer = torch.optim.Adam(params, lr=lr)
        self.decay = decay
        self.baseline: float | None = None

    def step(self, log_probs: list[torch.Tensor], rewards: list[float]) -> float:
        """One step on samples with their rewards (their gradients averaged); the baseline
        before it, against which the advantages were taken."""
        if self.baseline is None:
            self.baseline = sum(rewards) / len(rewards)
        baseline = self.baseline
        loss = sum(-(r - baseline) * lp for lp, r in zip(log_probs, rewards, strict=True))
        self.optimizer.zero_grad()
        (loss / len(rewards)).backward()
        self.optimizer.step()
        for reward in rewards:
            self.baseline = self.decay * self.baseline + (1 - self.decay) * reward
        return baseline
