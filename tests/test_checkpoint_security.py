"""Checkpoints load with weights_only=True: a hostile pickle is refused without running, and a
file that is not the checkpoint expected gets one clear line naming it, never a traceback."""

import os
import pathlib

import numpy as np
import pytest
import torch

from transformer_course.cli import main
from transformer_course.models.normalization import upgrade_state_dict
from transformer_course.models.transformer import Transformer, TransformerConfig
from transformer_course.recipes.tinytalks.model import load_tinytalks_model
from transformer_course.recipes.translator import Translator, load_translator
from transformer_course.training.checkpoint import CheckpointError, load_checkpoint_file, plain
from transformer_course.utils.device import set_seed
from transformer_course.utils.tokenizer import BPETokenizer

CORPUS = ["Ein Hund läuft.", "A dog runs.", "Zwei Katzen schlafen im Haus.",
          "Two cats sleep in the house.", "Ein Mann liest ein Buch.", "A man reads a book."]


def tiny_translator(max_len: int = 64, d_ff: int = 32, info: dict | None = None) -> Translator:
    """A translator with random weights: seconds to build, enough to load and decode."""
    set_seed(0)
    tokenizer = BPETokenizer.train(CORPUS, 300)
    config = TransformerConfig(tokenizer.vocab_size, tokenizer.vocab_size, d_model=16,
                               num_heads=2, num_encoder_layers=1, num_decoder_layers=1,
                               d_ff=d_ff, dropout=0.0, max_len=max_len, share_embeddings=True,
                               tie_output=True, pad_id=tokenizer.pad_id)
    return Translator(Transformer(config).eval(), tokenizer, info or {"profile": "tiny"})


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_translator().save(tmp_path_factory.mktemp("tiny") / "model.pt")


class Payload:
    """Unpickling this runs code that creates ``marker``, as an attacker's checkpoint would."""

    def __init__(self, marker: pathlib.Path, how: str):
        self.marker, self.how = marker, how

    def __reduce__(self):
        if self.how == "os.system":
            return os.system, (f"touch '{self.marker}'",)
        return pathlib.Path.touch, (self.marker,)


PAYLOADS = ["pathlib", pytest.param("os.system", marks=pytest.mark.skipif(
    os.name != "posix", reason="the shell command is a POSIX one"))]


def hostile_copy(source: pathlib.Path, target: pathlib.Path, how: str) -> pathlib.Path:
    """``source`` (a real checkpoint) with a payload hidden in its metadata; checks that the
    payload is live: loading it with weights_only=False creates the marker file."""
    marker = target.with_suffix(".ran")
    data = torch.load(source, weights_only=True)
    data["info"] = {"note": Payload(marker, how)}
    torch.save(data, target)
    torch.load(target, weights_only=False)  # the unsafe way: the payload runs
    assert marker.exists(), "the payload is not live: the test would prove nothing"
    marker.unlink()
    return marker


@pytest.mark.parametrize("how", PAYLOADS)
def test_a_hostile_translator_checkpoint_is_refused_without_running_it(checkpoint, tmp_path,
                                                                        how):
    evil = tmp_path / "evil.pt"
    marker = hostile_copy(checkpoint, evil, how)
    with pytest.raises(CheckpointError, match=r"evil\.pt is not a weights-only checkpoint: it "
                                              r"contains objects that are not allowed"):
        load_translator(evil)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="not allowed"):
        load_tinytalks_model(evil)
    assert not marker.exists()


@pytest.mark.parametrize("action", ["translate", "evaluate"])
def test_the_cli_refuses_a_hostile_checkpoint_in_one_line(checkpoint, tmp_path, capsys, action):
    evil = tmp_path / "evil.pt"
    marker = hostile_copy(checkpoint, evil, "pathlib")
    argv = ["translator", action, "--checkpoint", str(evil)]
    argv += ["Ein Hund."] if action == "translate" else ["--limit", "1"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and not marker.exists()
    assert captured.err.startswith(f"error: {evil} is not a weights-only checkpoint")
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_the_shipped_checkpoints_load_with_weights_only_and_identical_weights():
    root = pathlib.Path(__file__).resolve().parents[1] / "checkpoints"
    translator = root / "translator-cpu" / "model.pt"
    for path in [translator, *sorted((root / "tinytalks").glob("*.pt"))]:
        stored = load_checkpoint_file(path)["model"]
        load = load_translator if path == translator else load_tinytalks_model
        model = load(path, "cpu").model
        # Written before the layers took PyTorch's names: "attn_residual.norm.gamma" there is
        # "norm1.gamma" here.
        stored = upgrade_state_dict(model, stored)
        assert stored.keys() == model.state_dict().keys()
        for name, value in model.state_dict().items():
            assert torch.equal(value, stored[name].float()), (path.name, name)


def test_a_saved_translator_round_trips_with_identical_weights_and_plain_info(tmp_path):
    # A NumPy number in the info, as metrics sometimes return: saved as a plain float.
    original = tiny_translator(info={"profile": "tiny", "bleu": np.float64(12.5)})
    checkpoint = original.save(tmp_path / "model.pt")
    assert isinstance(load_checkpoint_file(checkpoint), dict)  # weights_only=True
    loaded = load_translator(checkpoint)
    for (name, a), (_, b) in zip(original.model.state_dict().items(),
                                 loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a.half().float(), b), name  # saved in fp16
    assert loaded.info == {"profile": "tiny", "bleu": 12.5}
    assert type(loaded.info["bleu"]) is float
    assert not list(checkpoint.parent.glob("*.tmp"))


def bad_file(tmp_path, checkpoint, kind) -> pathlib.Path:
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("this is a text file\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        raw = checkpoint.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "binary":
        path.write_bytes(bytes(range(256)))
    else:
        data = torch.load(checkpoint, weights_only=True)
        if kind == "no_tokenizer":
            del data["tokenizer"]
        elif kind == "trainer":
            data = {"model": data["model"], "optimizer": {}, "rng": {}, "state": {}}
        elif kind == "tinytalks":
            data = {"format": "transformer_course.tinytalks", "version": 1, "model": {}}
        elif kind == "weights":
            data = data["model"]
        elif kind == "other_config":
            data["config"]["d_ff"] = 64
        elif kind == "list":
            data = [1, 2, 3]
        torch.save(data, path)
    return path


@pytest.mark.parametrize("kind, message", [
    ("text", r"is not a readable translator checkpoint: it is a text file"),
    ("empty", r"is not a readable translator checkpoint: the file is empty"),
    ("truncated", r"is not a readable translator checkpoint: it is truncated or damaged"),
    ("binary", r"is not a readable translator checkpoint: it is not a PyTorch file"),
    ("list", r"is not a readable translator checkpoint: it holds a list, not a dict"),
    ("no_tokenizer", r"is not a translator checkpoint: it has no 'tokenizer' entry"),
    ("trainer", r"is not a translator checkpoint: it is a Trainer checkpoint"),
    ("tinytalks", r"is not a translator checkpoint: it is a TinyTalks model"),
    ("weights", r"is not a translator checkpoint: it is a bare state dict"),
    ("other_config", r"does not fit this model \(another configuration\?\): parameter "
                     r"'encoder\.layers\.0\.ffn\.linear1\.weight' is \(32, 16\) in the "
                     r"checkpoint but \(64, 16\) in the model"),
])
def test_a_file_that_is_not_a_translator_checkpoint_gets_one_clear_line(checkpoint, tmp_path,
                                                                         capsys, kind, message):
    path = bad_file(tmp_path, checkpoint, kind)
    with pytest.raises(CheckpointError, match=message) as error:
        load_translator(path)
    assert str(error.value).startswith(str(path)) and "\n" not in str(error.value)
    assert main(["translator", "translate", "--checkpoint", str(path), "Ein Hund."]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and str(path) in err


def test_a_translator_checkpoint_is_not_a_tinytalks_model(checkpoint):
    with pytest.raises(CheckpointError, match="is not a TinyTalks checkpoint: it is a translator "
                                              "model"):
        load_tinytalks_model(checkpoint)


def test_checkpoint_metadata_must_be_plain_values():
    assert plain({"a": np.int64(3), "b": [np.float32(0.5)], "c": pathlib.Path("x"),
                  "d": (1, "two"), "e": np.arange(3)}) == {
        "a": 3, "b": [0.5], "c": "x", "d": (1, "two"), "e": [0, 1, 2]}
    with pytest.raises(TypeError, match=r"info\['bad'\] is a builtins.object"):
        plain({"bad": object()}, "info")


# --- what is translated: never an empty text, never a silently cut one -----------------------


def test_translate_refuses_empty_and_splits_or_refuses_long_texts():
    translator = tiny_translator(max_len=12)
    with pytest.raises(ValueError, match="text 1 is empty"):
        translator.translate("   ", beam_size=1)
    with pytest.raises(ValueError, match="text 2 is empty"):
        translator.translate(["Ein Hund.", ""], beam_size=1)
    sentence = "Ein Hund läuft."
    assert len(translator.tokenizer.encode(sentence, add_eos=True)) <= 12
    text = " ".join([sentence] * 4)  # too long as a whole, each sentence fits
    assert translator.source_pieces(text) == [sentence] * 4
    one = translator.translate(sentence, beam_size=1)
    assert translator.translate(text, beam_size=1) == " ".join([one] * 4)
    assert translator.translate([text, sentence], beam_size=1) == [" ".join([one] * 4), one]
    endless = "Ein Hund läuft und " * 10 + "schläft."  # one sentence, too long
    with pytest.raises(ValueError, match=r"text 1 is too long for the model: \d+ tokens where "
                                         r"it reads at most 12"):
        translator.translate(endless, beam_size=1)
    with pytest.raises(ValueError, match="reads at most 12"):
        translator.encode_sources([endless])  # never cut
    with pytest.raises(ValueError, match="text 1 is not valid Unicode: character 4"):
        translator.translate("Ein \udcff Hund.", beam_size=1)


def test_cli_refuses_empty_texts_before_loading_the_model(tmp_path, capsys):
    missing = tmp_path / "missing.pt"  # not even read: the text is checked first
    for text in ["", "   \n\t"]:
        assert main(["translator", "translate", "--checkpoint", str(missing), text]) == 2
        assert capsys.readouterr().err == ("error: text 1 is empty: give a German sentence to "
                                           "translate\n")


def test_cli_refuses_undecodable_bytes_with_their_offset(tmp_path, capsys):
    # Python passes the undecodable bytes of argv on as lone surrogates: 0xff -> "\udcff".
    text = os.fsdecode(b"Ein Hund \xff\xfe l\xe4uft.")
    assert main(["translator", "translate", "--checkpoint", str(tmp_path / "x.pt"), text]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: text 1 is not valid UTF-8: byte 0xff at byte offset 9")
    assert err.count("\n") == 1
    assert main(["translator", "translate", "Ein \ud800 Hund"]) == 2  # not from argv at all
    assert "lone surrogate" in capsys.readouterr().err


def test_cli_splits_a_long_text_into_sentences_and_refuses_one_that_cannot_be(tmp_path, capsys):
    path = tiny_translator(max_len=12).save(tmp_path / "short.pt")
    text = " ".join(["Ein Hund läuft."] * 4)
    assert main(["translator", "translate", "--checkpoint", str(path), "--beam", "1", text]) == 0
    captured = capsys.readouterr()
    assert "note: text 1 is longer than the 12 tokens the model reads: translated as 4 " \
           "sentences" in captured.err
    assert captured.out.startswith(f"{text}\n  -> ")
    endless = "Ein Hund läuft und " * 10 + "schläft."
    assert main(["translator", "translate", "--checkpoint", str(path), endless]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: text 1 is too long for the model") and "at most 12" in err


def test_cli_reports_an_unwritable_output_in_one_line(checkpoint, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a folder should be")
    image = blocker / "attention.png"
    code = main(["translator", "translate", "--checkpoint", str(checkpoint), "--beam", "1",
                 "--attention-image", str(image), "Ein Hund."])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {image}") and err.count("\n") == 1
