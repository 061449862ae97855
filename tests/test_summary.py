import torch
from torch import nn

from stackrnn import GRU, LSTM, StackedRNN, summary


def test_summary_rows_and_total():
    stack = StackedRNN(10, layers=[LSTM(16), GRU(8, bidirectional=True), LSTM(12)], dropout=0.3)
    s = summary(stack, (35, 32, 10))
    assert [r.type for r in s.rows] == ["LSTM", "GRU bidirectional", "LSTM"]
    assert [r.output_shape for r in s.rows] == [(35, 32, 16), (35, 32, 16), (35, 32, 12)]
    assert s.total_params == sum(p.numel() for p in stack.parameters())
    assert sum(r.params for r in s.rows) == s.total_params
    # LSTM(10 -> 16): 4*16*(10+16) weights + 2*4*16 biases
    assert s.rows[0].params == 4 * 16 * 26 + 2 * 64
    text = str(s)
    assert "Total params: 4,480" in text and "GRU bidirectional" in text


def test_summary_of_keras_style_model():
    class Sentiment(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(1000, 16)
            self.rnn = StackedRNN(16, 32, num_layers=3, batch_first=True)
            self.dense = nn.Linear(32, 1)

        def forward(self, tokens):
            out, _ = self.rnn(self.embedding(tokens))
            return torch.sigmoid(self.dense(out[:, -1]))

    model = Sentiment()
    s = summary(model, (2, 20), dtype=torch.long)
    assert [r.name for r in s.rows] == ["embedding", "rnn.layers.0", "rnn.layers.1", "rnn.layers.2", "dense"]
    assert s.rows[-1].output_shape == (2, 1)
    assert s.total_params == sum(p.numel() for p in model.parameters()) == sum(r.params for r in s.rows)
    assert model.training  # summary leaves the mode as it found it
