"""Weights in and out: torch.nn.LSTM ⇄ lk.LSTM, and Keras LSTM weights ⇄ lk.LSTM.

Shape legend: I input features of a layer, H hidden size, P size of h (proj_size or H),
L layers, D directions.

torch / lstmkit, per layer and direction (gate order i, f, g, o)::

    weight_ih (4H, I)   weight_hh (4H, P)   bias_ih (4H,)   bias_hh (4H,)   [weight_hr (P, H)]

Keras ``LSTM(units=H).get_weights()`` (gate order i, f, c, o — c is the input node, our g)::

    kernel (I, 4H) = weight_ihᵀ    recurrent_kernel (H, 4H) = weight_hhᵀ    bias (4H,) = bias_ih + bias_hh

Keras has one bias where torch has two: reading Keras weights puts it in bias_ih and zeros in
bias_hh; writing them sums the two. Keras LSTM's defaults (activation="tanh",
recurrent_activation="sigmoid", Keras ≥ 2.3) are the equations lstmkit computes; a Keras model
built with recurrent_activation="hard_sigmoid" (Keras < 2.3's default) computes something
else and its weights do not transfer. A stack of Keras LSTM layers is one list of weights per
layer; ``Bidirectional(LSTM(...)).get_weights()`` is the forward layer's weights followed by the
backward layer's.
"""
from __future__ import annotations

from typing import Any, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..lstm import LSTM

# Arguments shared by torch.nn.LSTM and lk.LSTM that fully describe a plain network.
_CONFIG = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size")

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[Any]]


def _config(lstm: nn.Module) -> dict[str, Any]:
    return {k: getattr(lstm, k) for k in _CONFIG}


def _factory(lstm: nn.Module) -> dict[str, Any]:
    w = lstm.weight_ih_l0
    return {"device": w.device, "dtype": w.dtype}


def _plain_only(lstm: LSTM, to: str) -> None:
    variants = lstm._variants()
    if variants:
        raise ValueError(f"{to} has no {', '.join(variants)}: this lk.LSTM cannot be converted to it")


def from_torch(lstm: nn.LSTM, *, backend: str = "auto") -> LSTM:
    """An lk.LSTM with the configuration and a copy of the weights of a torch.nn.LSTM.

    Example:
        >>> import torch, lstmkit as lk
        >>> from lstmkit.interop import from_torch
        >>> ours = from_torch(torch.nn.LSTM(8, 16, num_layers=2))
        >>> isinstance(ours, lk.LSTM), ours.num_layers
        (True, 2)
    """
    if not isinstance(lstm, nn.LSTM):
        raise TypeError(f"from_torch expects a torch.nn.LSTM, got {type(lstm).__name__}")
    # forget_bias=None: no custom initialization to pay for, every weight is overwritten below.
    ours = LSTM(**_config(lstm), **_factory(lstm), forget_bias=None, backend=backend)
    ours.load_state_dict(lstm.state_dict())
    return ours.train(lstm.training)


def to_torch(lstm: LSTM) -> nn.LSTM:
    """A torch.nn.LSTM with the configuration and a copy of the weights of a plain lk.LSTM.

    Raises ValueError when the lk.LSTM uses options torch.nn.LSTM does not have.
    """
    if not isinstance(lstm, LSTM):
        raise TypeError(f"to_torch expects an lk.LSTM, got {type(lstm).__name__}")
    _plain_only(lstm, "torch.nn.LSTM")
    theirs = nn.LSTM(**_config(lstm), **_factory(lstm))
    theirs.load_state_dict(lstm.state_dict())
    return theirs.train(lstm.training)


# --------------------------------------------------------------------------- Keras


def _array(name: str, a: ArrayLike) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if not np.issubdtype(a.dtype, np.floating):
        raise TypeError(f"{name} must hold floating-point numbers, got dtype {a.dtype}")
    return a


def _split_layer(weights: Sequence[ArrayLike], bidirectional: bool, k: int) -> list[list[np.ndarray]]:
    """One Keras layer's weight list → per direction [kernel, recurrent_kernel(, bias)]."""
    D = 2 if bidirectional else 1
    if len(weights) not in (2 * D, 3 * D):
        raise ValueError(
            f"Keras weights of layer {k}: expected {3 * D} arrays (kernel, recurrent_kernel, bias"
            f"{' for the forward then the backward layer' if bidirectional else ''}) or {2 * D} without bias, "
            f"got {len(weights)}")
    n = len(weights) // D
    return [[_array(f"layer {k} array {d * n + j}", w) for j, w in enumerate(weights[d * n:(d + 1) * n])] for d in range(D)]


def from_keras(
    weights: Sequence[Any],
    *,
    bidirectional: bool = False,
    batch_first: bool = True,
    dtype: torch.dtype = torch.float32,
    backend: str = "auto",
) -> LSTM:
    """An lk.LSTM computing what a Keras LSTM (or stack of them) with these weights computes.

    Args:
        weights: one layer's ``get_weights()`` list ``[kernel (I, 4H), recurrent_kernel (H, 4H),
            bias (4H,)]`` (bias absent for use_bias=False), or a list of such lists, one per
            stacked layer. With bidirectional, each layer's list is the forward layer's arrays
            followed by the backward layer's (``Bidirectional(...).get_weights()``; outputs
            merged with merge_mode="concat").
        bidirectional: the layers are keras.layers.Bidirectional wrappers.
        batch_first: True (default) takes (B, T, I) input like Keras.
        dtype: parameter dtype of the result. backend: as lk.LSTM.

    Returns an lk.LSTM with bias_ih = Keras bias and bias_hh = 0.

    Example:
        >>> import numpy as np
        >>> from lstmkit.interop import from_keras
        >>> I, H = 3, 5
        >>> lstm = from_keras([np.zeros((I, 4 * H)), np.zeros((H, 4 * H)), np.zeros(4 * H)])
        >>> lstm.input_size, lstm.hidden_size, lstm.batch_first
        (3, 5, True)
    """
    if len(weights) == 0:
        raise ValueError("from_keras: got an empty weight list")
    single = isinstance(weights[0], (np.ndarray, torch.Tensor))  # one layer's list, not a list of lists
    layers = [weights] if single else list(weights)
    per_layer = [_split_layer(w, bidirectional, k) for k, w in enumerate(layers)]
    kernel0 = per_layer[0][0][0]
    if kernel0.ndim != 2 or kernel0.shape[1] % 4:
        raise ValueError(f"Keras kernel must be (input_size, 4*units), got shape {kernel0.shape}")
    I, H = kernel0.shape[0], kernel0.shape[1] // 4
    D = 2 if bidirectional else 1
    has_bias = len(per_layer[0][0]) == 3
    if any(len(arrs) != len(per_layer[0][0]) for layer in per_layer for arrs in layer):
        raise ValueError("from_keras: either every layer has a bias or none has")
    lstm = LSTM(I, H, num_layers=len(layers), bias=has_bias, batch_first=batch_first, bidirectional=bidirectional,
                dtype=dtype, forget_bias=None, backend=backend)
    state = {}
    for k, layer in enumerate(per_layer):
        for d, arrs in enumerate(layer):
            sfx = f"_l{k}" + ("_reverse" if d else "")
            layer_in = I if k == 0 else D * H
            kernel, rec = arrs[0], arrs[1]
            where = f"layer {k}{' backward' if d else ''}"
            if kernel.shape != (layer_in, 4 * H):
                raise ValueError(f"Keras kernel of {where}: expected shape {(layer_in, 4 * H)}, got {kernel.shape}")
            if rec.shape != (H, 4 * H):
                raise ValueError(f"Keras recurrent_kernel of {where}: expected shape {(H, 4 * H)}, got {rec.shape}")
            # Keras gate order i, f, c, o is torch's i, f, g, o: only a transpose is needed.
            state[f"weight_ih{sfx}"] = torch.as_tensor(kernel.T.copy(), dtype=dtype)  # (I, 4H) -> (4H, I)
            state[f"weight_hh{sfx}"] = torch.as_tensor(rec.T.copy(), dtype=dtype)  # (H, 4H) -> (4H, H)
            if has_bias:
                b = arrs[2]
                if b.shape != (4 * H,):
                    raise ValueError(f"Keras bias of {where}: expected shape {(4 * H,)}, got {b.shape}")
                state[f"bias_ih{sfx}"] = torch.as_tensor(b.copy(), dtype=dtype)
                state[f"bias_hh{sfx}"] = torch.zeros(4 * H, dtype=dtype)
    lstm.load_state_dict(state)
    return lstm


def to_keras(lstm: Union[LSTM, nn.LSTM]) -> list[list[np.ndarray]]:
    """The weights of an lk.LSTM (or torch.nn.LSTM) as Keras ``set_weights()`` lists, one per layer.

    Each layer's list is ``[kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,)]`` (no bias
    when bias=False), forward then backward direction when bidirectional — ready for
    ``keras_layers[k].set_weights(result[k])``. Keras has no projection, so proj_size must be 0.
    """
    if not isinstance(lstm, (LSTM, nn.LSTM)):
        raise TypeError(f"to_keras expects an lk.LSTM or torch.nn.LSTM, got {type(lstm).__name__}")
    if isinstance(lstm, LSTM):
        _plain_only(lstm, "Keras' LSTM layer")
    if lstm.proj_size:
        raise ValueError(f"Keras' LSTM layer has no projection: proj_size must be 0, got {lstm.proj_size}")
    D = 2 if lstm.bidirectional else 1
    result = []
    for k in range(lstm.num_layers):
        arrays: list[np.ndarray] = []
        for d in range(D):
            sfx = f"_l{k}" + ("_reverse" if d else "")

            def get(name: str) -> np.ndarray:
                return getattr(lstm, name + sfx).detach().cpu().numpy()

            arrays += [get("weight_ih").T.copy(), get("weight_hh").T.copy()]  # (I, 4H), (H, 4H)
            if lstm.bias:
                arrays.append(get("bias_ih") + get("bias_hh"))  # (4H,)
        result.append(arrays)
    return result
