"""LSTMForecaster.fit through the Trainer: the epochs' minibatches and what the training reaches."""
import numpy as np
import pytest
import torch

from lstmkit.apps.forecast import LSTMForecaster, Series
from lstmkit.apps.forecast.fitting import WindowEpochs, train_windows


def task(n=10, batch_size=4, seed=0):
    x = torch.arange(float(n)).view(n, 1, 1)
    return WindowEpochs(x, -x, lambda: None, batch_size, seed)


def test_every_epoch_visits_every_window_once_in_its_own_order():
    t = task()
    assert t.batches_per_epoch == 3
    epochs = [[t.global_batch(3 * e + i, 4)["x"].flatten().tolist() for i in range(3)] for e in range(3)]
    for batches in epochs:
        assert [len(b) for b in batches] == [4, 4, 2]  # the last minibatch of an epoch is shorter
        assert sorted(sum(batches, [])) == list(range(10))
    assert epochs[0] != epochs[1]  # reshuffled each epoch
    later = task()  # batch k is a function of k alone: asked out of order, the same windows
    assert later.global_batch(7, 4)["x"].flatten().tolist() == epochs[2][1]
    assert torch.equal(later.global_batch(7, 4)["y"], -later.global_batch(7, 4)["x"])


def test_fit_learns_a_seasonal_series_and_checks_its_epochs():
    t = np.arange(72)
    s = Series(10 + np.sin(2 * np.pi * t / 6), season=6)
    kw = dict(horizon=6, lookback=12, hidden_size=8, loss="mse", lr=1e-2, batch_size=16)
    short = LSTMForecaster(epochs=1, **kw).fit(s.head(60))
    trained = LSTMForecaster(epochs=60, **kw).fit(s.head(60))
    err = [np.abs(f.predict(6).mean - s.y[60:66]).mean() for f in (short, trained)]
    assert err[1] < 0.5 * err[0], err
    assert not trained.model.training
    with pytest.raises(ValueError, match="epochs must be >= 1, got 0"):
        train_windows(torch.zeros(4, 2, 1), torch.zeros(4, 1, 1), lambda: None, epochs=0, lr=1e-3, batch_size=2,
                      weight_decay=0.0, clip_norm=1.0, seed=0)
