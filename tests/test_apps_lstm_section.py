"""The [lstm] section: every app exposes every lk.LSTM variant by the same names, checked the same way."""
from __future__ import annotations

import json
import os

import pytest
import torch

from lstmkit.apps import LSTMConfig
from lstmkit.apps.classify import SequenceClassifier
from lstmkit.apps.forecast import ForecasterConfig, LSTMForecaster
from lstmkit.apps.text import CharLM
from lstmkit.apps.translate import Seq2Seq
from lstmkit.apps.vocab import SPECIALS
from lstmkit.train.config import ConfigError, parse_overrides, parse_run_config

SECTION = {"peephole": True, "coupled": True, "layer_norm": True, "zoneout": [0.1, 0.2], "recurrent_dropout": 0.1,
           "input_dropout": 0.1, "weight_drop": 0.1, "forget_bias": 2.0, "proj_size": 3}
TINY = {  # each app's smallest config that builds a model without reading data
    "text": {"vocab": "abc", "embedding_size": 3, "hidden_size": 5},
    "translate": {"src_vocab": list(SPECIALS) + ["a"], "tgt_vocab": list(SPECIALS) + ["b"], "embedding_size": 3,
                  "hidden_size": 5, "eval_size": 0},
}


def lstms(model):
    return [m for m in model.modules() if m.__class__.__name__ == "LSTM"]


def check_variants(lstm):
    assert (lstm.peephole, lstm.coupled, lstm.layer_norm) == (True, True, True)
    assert lstm.zoneout == (0.1, 0.2) and lstm.forget_bias == 2.0 and lstm.proj_size == 3
    assert (lstm.recurrent_dropout, lstm.input_dropout, lstm.weight_drop) == (0.1, 0.1, 0.1)


@pytest.mark.parametrize("app", ["text", "translate"])
def test_run_config_section_reaches_every_lstm_of_the_model(app):
    from lstmkit.train.run import build_task

    cfg = parse_run_config({"task": app, **TINY[app], "lstm": SECTION})
    assert isinstance(cfg.options.lstm, LSTMConfig)
    model = build_task(cfg).build_model().train()
    found = lstms(model)
    assert len(found) == (1 if app == "text" else 2)
    for lstm in found:
        check_variants(lstm)
    assert cfg.to_dict()["lstm"]["zoneout"] == [0.1, 0.2]  # config.json holds the section as a table
    assert parse_run_config(json.loads(json.dumps(cfg.to_dict()))).options.lstm == cfg.options.lstm


def test_classify_and_forecast_models_take_the_section():
    section = LSTMConfig(**{**SECTION, "zoneout": (0.1, 0.2)})
    clf = SequenceClassifier(4, 3, hidden_size=5, bidirectional=True, pooling="attention", **section.kwargs())
    check_variants(clf.lstm)
    assert clf(torch.randn(2, 6, 4), torch.tensor([6, 3])).shape == (2, 3)  # pooled vector is D·proj_size
    f = LSTMForecaster(ForecasterConfig(hidden_size=5, ensemble=2, lstm=section))
    net = f.build_model(2)
    for member in net.members:
        check_variants(member.lstm)
    assert net(torch.randn(2, 7, 2))["mu"].shape == (2, 2, 12, 1)


def test_projected_models_run_forward():
    lm = CharLM(3, embedding_size=2, hidden_size=5, tie_weights=True, proj_size=2)  # tied to the projected h
    logits, (h, c) = lm(torch.zeros(2, 4, dtype=torch.long))
    assert logits.shape == (2, 4, 3) and h.shape == (1, 2, 2) and c.shape == (1, 2, 5)
    s2s = Seq2Seq(6, 7, embedding_size=3, hidden_size=5, bidirectional=True, input_feed=True, proj_size=2)
    out = s2s(torch.tensor([[4, 5, 0]]), torch.tensor([2]), torch.tensor([[1, 4]]))
    assert out.shape == (1, 2, 7)


def test_old_top_level_keys_map_onto_the_section():
    old = parse_run_config({"task": "text", **TINY["text"], "layer_norm": True, "zoneout": 0.25, "peephole": True})
    assert old.options.lstm.layer_norm and old.options.lstm.peephole and old.options.lstm.zoneout == (0.25, 0.25)
    assert "layer_norm" not in old.to_dict() and old.to_dict()["lstm"]["layer_norm"] is True
    with pytest.raises(ConfigError, match="layer_norm and lstm.layer_norm are the same setting"):
        parse_run_config({"task": "text", **TINY["text"], "layer_norm": True, "lstm": {"layer_norm": False}})


def test_shipped_pre_section_run_folder_still_loads():
    import lstmkit

    path = os.path.join(os.path.dirname(lstmkit.__file__), "pretrained", "shakespeare", "config.json")
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    assert "layer_norm" in data and "lstm" not in data  # written before the section existed
    assert parse_run_config(data).options.lstm == LSTMConfig()


@pytest.mark.parametrize("section, message", [
    ({"zoneout": 1.5}, r"lstm: zoneout \(cell\) must be a number in \[0, 1\], got 1.5"),
    ({"recurrent_dropout": 1.0}, "lstm: recurrent_dropout must be below 1"),
    ({"proj_size": -1}, "lstm: proj_size must be an integer >= 0"),
    ({"proj_size": 5}, r"lstm.proj_size must be smaller than hidden_size=5, got 5"),
    ({"peephole": "yes"}, "lstm.peephole: expected true or false"),
    ({"peepholes": True}, "unknown key 'lstm.peepholes'"),
])
def test_bad_section_values_are_one_clear_error_in_every_app(section, message):
    for app in ("text", "translate"):
        with pytest.raises(ConfigError, match=message):
            parse_run_config({"task": app, **TINY[app], "lstm": section})


def test_command_line_overrides_reach_the_section():
    over = parse_overrides(["--lstm.zoneout", "0.1,0.3", "--lstm.layer_norm", "true", "--lstm.forget_bias", "none"])
    cfg = parse_run_config({"task": "text", **TINY["text"], **over})
    assert cfg.options.lstm.zoneout == (0.1, 0.3) and cfg.options.lstm.layer_norm
    assert cfg.options.lstm.forget_bias is None


def test_xlstm_cells_refuse_the_section():
    with pytest.raises(ValueError, match=r"the \[lstm\] section \(peephole\) applies to model = 'lstm' only"):
        parse_run_config({"task": "text", **TINY["text"], "model": "slstm", "num_heads": 1,
                          "lstm": {"peephole": True}})


def test_resuming_a_pre_section_run_takes_overrides_in_either_place(tmp_path, capsys):
    from lstmkit.cli import main
    from lstmkit.train import checkpoint as ckpt

    data = tmp_path / "t.txt"
    data.write_text("hello world\n" * 40, encoding="utf-8")
    run = str(tmp_path / "run")
    fast = ["--seq_len", "8", "--embedding_size", "4", "--hidden_size", "6", "--ngram_context", "0",
            "--train.batch_size", "2", "--train.progress", "off", "--train.plot", "false", "--train.threads", "1"]
    assert main(["train", "text", "--data", str(data), "--lstm.layer_norm", "true", "--train.steps", "2",
                 *fast, "--run_dir", run]) == 0
    config = ckpt.load_config(run)
    section = config.pop("lstm")
    config.update({k: section[k] for k in ("layer_norm", "peephole", "coupled", "zoneout", "recurrent_dropout")})
    config["zoneout"] = 0.0  # as a run written before the section recorded it
    ckpt.save_config(run, config)
    assert main(["train", "--resume", run, "--train.steps", "3", "--lstm.layer_norm", "true"]) == 0
    assert ckpt.load_config(run)["lstm"]["layer_norm"] is True and "layer_norm" not in ckpt.load_config(run)
    assert main(["train", "--resume", run, "--train.steps", "4", "--layer_norm", "true"]) == 0  # the old spelling
    assert ckpt.read_state(run)["step"] == 4
