"""The translation recipe end to end, on its seconds-long smoke profile."""

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import load_or_skip

from transformer_course.cli import main
from transformer_course.recipes.translator import PROFILES, load_translator, train_translator
from transformer_course.utils.dataset import load_multi30k


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    load_or_skip(load_multi30k, "val")
    output = tmp_path_factory.mktemp("smoke")
    summary = train_translator("smoke", output, seed=0, progress=False, log=lambda *_: None)
    return output, summary


def test_the_recipe_writes_a_model_a_history_and_a_scored_summary(smoke_run):
    output, summary = smoke_run
    assert (output / "model.pt").exists() and (output / "tokenizer.json").exists()
    history = json.loads((output / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"train_loss", "val_loss", "val_bleu_greedy", "watch"} <= set(history[0])
    assert history[1]["val_loss"] < history[0]["val_loss"]
    beam = summary["evaluation"]["beam"]
    assert "tok:13a" in beam["signature"] and "case:mixed" in beam["signature"]
    assert summary["evaluation"]["sentences"] == 1000
    assert json.loads((output / "summary.json").read_text())["profile"]["name"] == "smoke"


def test_saved_translator_loads_and_translates(smoke_run):
    output, _ = smoke_run
    translator = load_translator(output / "model.pt")
    assert all(p.dtype.is_floating_point for p in translator.model.parameters())
    outputs = translator.translate(["Ein Mann liest ein Buch.", "Zwei Hunde."], beam_size=2)
    assert len(outputs) == 2 and all(isinstance(o, str) for o in outputs)
    assert translator.translate("Ein Hund.", beam_size=1) == translator.translate(
        ["Ein Hund."], beam_size=1)[0]
    maps = translator.cross_attention("Ein Mann liest ein Buch.", beam_size=1)
    layers, heads, rows, cols = maps["weights"].shape
    assert rows == len(maps["output_tokens"]) and cols == len(maps["source_tokens"])


@pytest.mark.slow
def test_resume_continues_the_same_run(tmp_path):
    load_or_skip(load_multi30k, "val")
    profile = dataclasses.replace(PROFILES["smoke"], train_pairs=500, val_bleu_sentences=16)
    train_translator(profile, tmp_path, epochs=1, progress=False, log=lambda *_: None)
    first = json.loads((tmp_path / "history.json").read_text())
    lines = []
    train_translator(profile, tmp_path, epochs=2, resume=True, progress=False, log=lines.append)
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[0] == first[0] and [h["epoch"] for h in history] == [1, 2]
    assert any(line.startswith("resumed at epoch 2") for line in lines)


def test_cli_translates_and_saves_the_attention_image(smoke_run, tmp_path, capsys):
    output, _ = smoke_run
    image = tmp_path / "attention.png"
    code = main(["translator", "translate", "Ein Mann liest ein Buch.", "--checkpoint",
                 str(output / "model.pt"), "--beam", "2", "--attention-image", str(image)])
    assert code == 0
    assert "Ein Mann liest ein Buch.\n  -> " in capsys.readouterr().out
    assert image.stat().st_size > 10_000


def test_cli_reports_a_missing_checkpoint(tmp_path, capsys):
    assert main(["translator", "translate", "Hallo", "--checkpoint", str(tmp_path / "x.pt")]) == 1
    assert "no translator checkpoint" in capsys.readouterr().err


def test_cli_evaluates_several_splits_into_json(smoke_run, tmp_path, capsys):
    output, _ = smoke_run
    scores = tmp_path / "scores.json"
    code = main(["translator", "evaluate", "--checkpoint", str(output / "model.pt"), "--beam",
                 "2", "--split", "val", "test_2016_flickr", "--limit", "8", "--json", str(scores)])
    assert code == 0
    results = json.loads(scores.read_text())
    assert {"val", "test_2016_flickr"} <= set(results)
    assert results["val"]["sentences"] == 8
    assert results["val"]["beam"]["beam_size"] == 2 and results["val"]["greedy"]["beam_size"] == 1
    assert "test_2016_flickr beam (beam 2): BLEU" in capsys.readouterr().out


def test_cli_refuses_an_unknown_split_before_loading_anything(tmp_path, capsys):
    code = main(["translator", "evaluate", "--split", "test_2019", "--checkpoint",
                 str(tmp_path / "missing.pt")])
    assert code == 2
    assert "unknown Multi30k split 'test_2019'" in capsys.readouterr().err


def test_the_committed_checkpoint_matches_its_logged_run():
    root = Path(__file__).resolve().parents[1]
    summary = json.loads((root / "results" / "translator-cpu" / "summary.json").read_text())
    assert summary["profile"]["name"] == "cpu" and summary["training_minutes"] <= 60
    assert summary["evaluation"]["beam"]["bleu"] >= 35
    translator = load_translator(root / "checkpoints" / "translator-cpu" / "model.pt")
    assert translator.model.num_parameters() == summary["parameters"]
    assert translator.translate("Ein Mann liest ein Buch.", beam_size=1) == "A man reads a book."


def test_cli_evaluation_keeps_the_splits_it_could_score(smoke_run, tmp_path, capsys,
                                                         monkeypatch):
    import transformer_course.recipes.translator as translator_module
    from transformer_course.utils.dataset import DatasetError

    def offline_2017(split):
        if split == "test_2017_flickr":
            raise DatasetError("test_2017_flickr: no network and no local copy")
        return load_multi30k(split)

    monkeypatch.setattr(translator_module, "load_multi30k", offline_2017)
    output, _ = smoke_run
    scores = tmp_path / "scores.json"
    code = main(["translator", "evaluate", "--checkpoint", str(output / "model.pt"), "--beam",
                 "2", "--split", "test_2017_flickr", "val", "--limit", "4", "--json", str(scores)])
    assert code == 1
    results = json.loads(scores.read_text())
    assert results["val"]["sentences"] == 4
    assert "no network" in results["test_2017_flickr"]["error"]
    assert "error: test_2017_flickr" in capsys.readouterr().err


@pytest.mark.slow
def test_the_recipe_trains_the_nn_transformer_variant(tmp_path):
    load_or_skip(load_multi30k, "val")
    profile = dataclasses.replace(PROFILES["smoke"], train_pairs=300, val_bleu_sentences=8,
                                  epochs=1)
    summary = train_translator(profile, tmp_path, progress=False, log=lambda *_: None,
                               architecture="pytorch")
    assert summary["architecture"] == "pytorch"
    assert summary["command"].endswith("--architecture pytorch")
    translator = load_translator(tmp_path / "model.pt")
    assert type(translator.model).__name__ == "TorchTransformer"
    assert isinstance(translator.translate("Ein Hund.", beam_size=2), str)
    with pytest.raises(ValueError, match="unknown architecture"):
        train_translator(profile, tmp_path, architecture="keras")


class _Payload:
    """Unpickling this creates ``marker``: code an attacker's checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


@pytest.mark.parametrize("latest", ["hostile", "translator", "other_config"])
def test_cli_resume_refuses_a_foreign_checkpoint_in_one_line(tmp_path, capsys, monkeypatch,
                                                             latest):
    import torch

    import transformer_course.recipes.translator as translator_module

    # A recipe of seconds on a few sentence pairs: resume fails before the first step.
    pairs = [("Ein Hund läuft.", "A dog runs."), ("Zwei Katzen schlafen.", "Two cats sleep."),
             ("Ein Mann liest.", "A man reads.")] * 4
    profile = dataclasses.replace(
        PROFILES["smoke"], vocab_size=300, val_bleu_sentences=2, epochs=1, warmup_steps=1,
        model=dict(d_model=16, num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                   d_ff=32, dropout=0.0))
    monkeypatch.setitem(translator_module.PROFILES, "smoke", profile)
    monkeypatch.setattr(translator_module, "load_multi30k", lambda split: pairs)
    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "ran"
    if latest == "hostile":
        torch.save({"model": {}, "optimizer": {}, "rng": _Payload(marker), "state": {}},
                   run / "latest.pt")
        expected = "is not a weights-only checkpoint: it contains objects that are not allowed"
    elif latest == "translator":
        root = Path(__file__).resolve().parents[1]
        (run / "latest.pt").write_bytes(
            (root / "checkpoints" / "translator-cpu" / "model.pt").read_bytes())
        expected = "is not a Trainer checkpoint: it is a translator model"
    else:
        from test_training import make_trainer  # a Trainer checkpoint of another model

        make_trainer(tmp_path).save_checkpoint(run / "latest.pt")
        expected = "does not fit this model (another configuration?): parameter"
    code = main(["translator", "train", "--profile", "smoke", "--output", str(run), "--resume",
                 "--device", "cpu"])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'latest.pt'} ") and expected in err
    assert err.count("\n") == 1 and not marker.exists()
