"""lstmkit: Long Short-Term Memory networks as the classic account describes them.

    >>> import lstmkit as lk
    >>> lstm = lk.LSTM(32, 128, num_layers=2, batch_first=True)

See lk.LSTM, lk.LSTMCell, lk.RNN, and the xLSTM cells lk.sLSTM, lk.mLSTM and their
blocks, lk.xLSTMBlockStack.
"""
from .cell import LSTMCell
from .decoding import LSTMDecoder
from .kernels import LSTMGates, RNNStates, available_backends
from .lstm import LSTM, LSTMResult
from .options import LSTMOptions
from .rnn import RNN, RNNResult
from .xlstm import MLSTMGates, SLSTMGates, mLSTM, mLSTMResult, sLSTM, sLSTMResult, xLSTMBlockStack
from .interop import export_onnx  # onnx itself is imported only when called

__version__ = "0.1.0"
__all__ = ["LSTM", "LSTMCell", "LSTMDecoder", "LSTMGates", "LSTMOptions", "LSTMResult", "RNN", "RNNResult", "RNNStates", "available_backends",
           "export_onnx", "MLSTMGates", "SLSTMGates", "mLSTM", "mLSTMResult", "sLSTM", "sLSTMResult", "xLSTMBlockStack"]
