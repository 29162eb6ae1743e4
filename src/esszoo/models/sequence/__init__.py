"""Sequence models: recurrent nets, attention and Transformers, for series of Earth data."""

from esszoo.models.sequence import (
    bert,  # noqa: F401
    column_rnn,  # noqa: F401
    convlstm,  # noqa: F401
    gpt,  # noqa: F401
    gru,  # noqa: F401
    lstm,  # noqa: F401
    rnn,  # noqa: F401
    seq2seq,  # noqa: F401
    seq2seq_attention,  # noqa: F401
    transformer,  # noqa: F401
)
