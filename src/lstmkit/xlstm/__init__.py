"""xLSTM (Beck et al. 2024, "xLSTM: Extended Long Short-Term Memory") beside the classic LSTM.

lk.sLSTM: scalar memory with exponential gating, a normalizer and a stabilizer state, and
head-wise recurrent matrices. lk.mLSTM: a matrix memory with a covariance update and no
hidden-to-hidden recurrence, in recurrent, parallel and chunkwise forms. lk.xLSTMBlockStack:
the residual blocks around them, mixed as the paper's xLSTM[m:s].
"""
from .blocks import mLSTMBlock, sLSTMBlock, xLSTMBlockStack
from .mlstm import MLSTMGates, mLSTM, mLSTMResult
from .slstm import sLSTM, sLSTMResult
from .slstm_reference import SLSTMGates

__all__ = ["MLSTMGates", "SLSTMGates", "mLSTM", "mLSTMResult", "mLSTMBlock", "sLSTM", "sLSTMBlock", "sLSTMResult", "xLSTMBlockStack"]
