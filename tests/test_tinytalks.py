"""The TinyTalks capstone: the attention proof and its uniform-attention ablation, Q&A and
dialogue data, GPT training, exact-answer evaluation, checkpoints and the command line.

Every model here is tiny and trains for a few dozen steps: the tests check behaviour, not the
capstone's numbers (those are in results/tinytalks/, made by the commands in the README).
"""

import dataclasses
import io
import json
import math
import random
import sys

import pytest
import torch
from conftest import load_or_skip
from torch.testing import assert_close

from transformer_course.cli import main
from transformer_course.models.attention import make_causal_mask, uniform_attention_weights
from transformer_course.models.gpt import GPT, GPTConfig
from transformer_course.models.multihead import use_uniform_attention
from transformer_course.models.transformer import Transformer, TransformerConfig
from transformer_course.recipes.tinytalks.data import (
    DIALOGUE_LINKS,
    IGNORE,
    Sample,
    build_tokenizer,
    check_levels,
    dialogue_prompt,
    encode_sample,
    format_exchange,
    format_qa,
    load_pairs,
    make_samples,
    qa_prompt,
)
from transformer_course.recipes.tinytalks.model import Chat, load_tinytalks_model, reply
from transformer_course.recipes.tinytalks.proof import (
    ProofConfig,
    proof_attention,
    proof_verdict,
    run_proof,
)
from transformer_course.recipes.tinytalks.training import (
    TinyTalksConfig,
    evaluate_answers,
    train_tinytalks,
)
from transformer_course.utils.dataset import QAPair, load_tinytalks

QUIET = {"progress": False, "log": lambda *_: None}


@pytest.fixture(scope="module")
def pairs():
    load_or_skip(load_tinytalks, "train")
    return load_pairs(5)


@pytest.fixture(scope="module")
def tiny_run(pairs):
    """A Q&A model of a few thousand parameters, 30 steps on the level-1 pairs."""
    config = TinyTalksConfig(levels=1, d_model=16, num_layers=1, num_heads=2, batch_size=16,
                             max_steps=30, minutes=None, eval_every=10, peak_lr=1e-2)
    return train_tinytalks(config, device="cpu", **QUIET)


# --- uniform attention: the ablation ------------------------------------------------------------


def test_uniform_weights_spread_evenly_over_the_allowed_keys():
    lengths = torch.tensor([3, 5])
    padding = (torch.arange(5)[None, :] < lengths[:, None])[:, None, None, :]  # (2, 1, 1, 5)
    weights = uniform_attention_weights((2, 2, 4, 5), padding)
    assert weights.shape == (2, 2, 4, 5)
    assert_close(weights[0], torch.tensor([1 / 3] * 3 + [0.0] * 2).expand(2, 4, 5))
    assert_close(weights[1], torch.full((2, 4, 5), 0.2))

    causal = uniform_attention_weights((4, 4), make_causal_mask(4))
    expected = torch.tril(torch.ones(4, 4)) / torch.arange(1, 5)[:, None]  # row i: 1/(i+1)
    assert_close(causal, expected)
    nothing = uniform_attention_weights((2, 3), torch.tensor([[True, False, True], [False] * 3]))
    assert_close(nothing, torch.tensor([[0.5, 0.0, 0.5], [0.0, 0.0, 0.0]]))
    assert_close(uniform_attention_weights((1, 2, 4)), torch.full((1, 2, 4), 0.25))
    with pytest.raises(ValueError, match="boolean"):
        uniform_attention_weights((2, 3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="does not broadcast"):
        uniform_attention_weights((2, 3), torch.ones(4, 3, dtype=torch.bool))


def test_uniform_gpt_is_a_causal_running_mean_and_switches_back():
    model = GPT(GPTConfig(vocab_size=12, context_length=8, d_model=16, num_heads=2,
                          num_layers=2, dropout=0.0)).eval()
    tokens = torch.randint(0, 12, (3, 6))
    original = model(tokens)
    assert use_uniform_attention(model) == 2
    uniform = model(tokens)
    running_mean = torch.tril(torch.ones(6, 6)) / torch.arange(1, 7)[:, None]
    for layer in model.attention_weights():  # (batch, heads, 6, 6) each
        assert_close(layer, running_mean.expand(3, 2, 6, 6))
    assert not torch.allclose(uniform, original)
    # Still causal: changing the last token leaves every earlier prediction unchanged.
    changed = tokens.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 12
    assert_close(model(changed)[:, :-1], uniform[:, :-1])
    # Decoding with the key/value cache (no mask, one query at a time) agrees.
    cache = model.new_cache()
    stepwise = torch.cat([model(tokens[:, t : t + 1], cache) for t in range(6)], dim=1)
    assert_close(stepwise, uniform, atol=1e-5, rtol=1e-5)
    assert use_uniform_attention(model, enabled=False) == 2
    assert_close(model(tokens), original)


def test_uniform_cross_attention_ignores_the_source_padding():
    config = TransformerConfig(src_vocab_size=9, tgt_vocab_size=9, d_model=16, num_heads=2,
                               num_encoder_layers=1, num_decoder_layers=1, d_ff=32,
                               dropout=0.0, max_len=8)
    model = Transformer(config).eval()
    use_uniform_attention(model)
    src = torch.tensor([[4, 5, 6, 0], [4, 5, 6, 7]])  # the first source has one pad
    model(src, torch.tensor([[2, 4, 5], [2, 6, 7]]))
    cross = model.attention_weights()["cross"][0]  # (2, heads, 3, 4)
    assert_close(cross[0], torch.tensor([1 / 3] * 3 + [0.0]).expand(2, 3, 4))
    assert_close(cross[1], torch.full((2, 3, 4), 0.25))


# --- stage 1: the attention proof ---------------------------------------------------------------


@pytest.fixture(scope="module")
def proofs():
    config = ProofConfig(seq_len=4, num_symbols=5, d_model=32, train_size=64 * 150,
                         held_out=200, eval_every=50)
    ablation = dataclasses.replace(config, uniform_attention=True)
    return run_proof(config, device="cpu"), run_proof(ablation, device="cpu")


@pytest.mark.slow
def test_reversal_is_learned_with_attention_and_not_with_uniform_weights(proofs):
    learned, uniform = proofs
    assert learned.passed and learned.accuracy >= 0.99
    assert learned.history["eval_step"][-1] == learned.steps == 150
    assert learned.history["loss"][-1] < learned.history["loss"][0] / 10
    assert learned.mirror_weight > 0.5  # most attention on source position n - 1 - i
    assert not uniform.passed and uniform.accuracy < 0.5
    assert uniform.mirror_weight == pytest.approx(1 / 4)  # spread over the 4 source symbols
    example = learned.examples[0]
    assert example["correct"] == (example["output"] == example["source"][::-1])
    json.dumps(learned.summary())  # JSON-ready, no tensors


@pytest.mark.slow
def test_proof_verdict_is_the_threshold_on_held_out_accuracy(proofs):
    assert proof_verdict(0.99, 0.99) and proof_verdict(1.0)
    assert not proof_verdict(0.989, 0.99) and not proof_verdict(0.0)
    learned, _ = proofs
    assert learned.passed == (learned.accuracy >= learned.config.threshold)
    maps = proof_attention(learned, index=3)
    assert maps["weights"].shape == (1, 2, 5, 4)  # (layers, heads, seq_len + 1, seq_len)
    assert len(maps["output_labels"]) == 5 and len(maps["source_labels"]) == 4
    assert_close(maps["weights"].sum(-1), torch.ones(1, 2, 5))
    with pytest.raises(ValueError, match="divisible"):
        ProofConfig(d_model=30, num_heads=4)


# --- stages 2 and 3: data -----------------------------------------------------------------------


def test_formats_prompts_and_the_unknown_character_rule():
    pair = QAPair("What is 2 plus 3?", "2 plus 3 equals 5.", 3)
    assert format_qa(pair) == "Q: What is 2 plus 3?\nA: 2 plus 3 equals 5.\n"
    assert format_qa(pair).startswith(qa_prompt(pair.question) + " ")
    assert format_exchange("Hi!", "Hello!") == "User: Hi!\nBot: Hello!\n"
    assert dialogue_prompt("His name is Max.", ("I have a dog.", "Nice!")) == (
        "User: I have a dog.\nBot: Nice!\nUser: His name is Max.\nBot:")
    assert dialogue_prompt("Hi!") == "User: Hi!\nBot:"
    tokenizer = build_tokenizer([pair], "qa")
    assert set(tokenizer.characters) == set(format_qa(pair))
    assert tokenizer.encode("Q: é?") == tokenizer.encode("Q: ") + [1] + tokenizer.encode("?")


def test_official_splits_filtered_by_level(pairs):
    assert {split: len(p) for split, p in pairs.items()} == {"train": 210, "val": 45, "test": 46}
    questions = [{p.question for p in split} for split in pairs.values()]
    assert not (questions[0] & questions[1] or questions[0] & questions[2]
                or questions[1] & questions[2])
    easy = load_pairs(2)
    for split in pairs:
        assert easy[split] == [p for p in pairs[split] if p.level <= 2]
        assert {p.level for p in easy[split]} == {1, 2}
    for bad in (0, 6, 2.5, "3", True):
        with pytest.raises(ValueError, match="integer from 1 to 5"):
            check_levels(bad)
    with pytest.raises(ValueError, match="integer from 1 to 5"):
        TinyTalksConfig(levels=6)
    with pytest.raises(ValueError, match="budget"):
        TinyTalksConfig(minutes=None)


def test_dialogue_samples_carry_the_previous_exchange_without_leaking_held_out_text(pairs):
    everything = {p.question for split in pairs.values() for p in split}
    assert set(DIALOGUE_LINKS) | set(DIALOGUE_LINKS.values()) <= everything  # no typos
    val = make_samples(pairs["val"], "dialogue", context_pairs=pairs["train"])
    max_sample = next(s for s in val if s.pair.question == "His name is Max.")
    assert max_sample.context == (
        "User: I have a dog.\nBot: Dogs are wonderful pets! What is your dog's name?\n")
    assert max_sample.text == "User: His name is Max.\nBot: Max is a great name for a dog!\n"
    assert all(s.context == "" for s in val if s is not max_sample)  # evaluation: no random

    train = make_samples(pairs["train"], "dialogue", rng=random.Random(0))
    train_exchanges = {format_exchange(p.question, p.answer) for p in pairs["train"]}
    assert all(s.context in train_exchanges | {""} for s in train)  # only training text
    assert all(s.context != s.text for s in train)
    sister = next(s for s in train if s.pair.question == "I also have a sister.")
    assert sister.context.startswith("User: I have a brother.\n")
    unlinked = [s for s in train if s.pair.question not in DIALOGUE_LINKS]
    share = sum(bool(s.context) for s in unlinked) / len(unlinked)
    assert 0.35 < share < 0.65  # random_context=0.5
    assert all(s.context == "" for s in make_samples(pairs["train"], "qa"))


def test_encoding_scores_only_the_exchange_and_crops_the_oldest_context():
    sample = Sample("User: I have a dog.\nBot: Nice!\n", "User: Hi!\nBot: Hello!\n",
                    "User: Hi!\nBot:", QAPair("Hi!", "Hello!", 1))
    tokenizer = build_tokenizer([QAPair("I have a dog.", "Nice!", 5), sample.pair], "dialogue")
    inputs, targets = encode_sample(tokenizer, sample, 128)
    assert len(inputs) == len(targets) == len(sample.context) + len(sample.text)
    assert inputs[0] == 2  # <s>
    scored = [t for t in targets if t != IGNORE]
    assert tokenizer.decode(scored) == sample.text
    assert targets[: len(sample.context)] == [IGNORE] * len(sample.context)
    short_in, short_targets = encode_sample(tokenizer, sample, len(sample.text) + 3)
    assert len(short_in) == len(sample.text) + 3
    assert tokenizer.decode(short_in) == (sample.context + sample.text)[-len(sample.text) - 4:-1]
    assert tokenizer.decode([t for t in short_targets if t != IGNORE]) == sample.text
    with pytest.raises(ValueError, match="context length"):
        encode_sample(tokenizer, sample, len(sample.text) - 1)


# --- training, evaluation, replies ----------------------------------------------------------


def test_training_reduces_the_validation_loss(tiny_run):
    history = tiny_run.history
    assert [h["step"] for h in history] == [10, 20, 30]
    assert history[-1]["val_loss"] < history[0]["val_loss"] - 0.3
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert tiny_run.val_loss == history[-1]["val_loss"] and tiny_run.seconds > 0
    assert tiny_run.steps == 30 and tiny_run.stopped_by == "max_steps"
    assert tiny_run.epochs == pytest.approx(30 / 2)  # 32 level-1 pairs, batches of 16
    summary = json.loads(json.dumps(tiny_run.summary()))
    assert summary["pairs"] == {"train": 32, "val": 7, "test": 8}
    assert summary["met_target"] == (summary["val_loss"] < 1.3)


def test_epoch_budget_stops_training(pairs):
    config = TinyTalksConfig(levels=1, d_model=16, num_layers=1, num_heads=2, batch_size=16,
                             epochs=2, minutes=None)
    result = train_tinytalks(config, device="cpu", **QUIET)
    assert result.steps == 4 and result.stopped_by == "epochs"
    assert [h["step"] for h in result.history] == [4]


def test_exact_answers_are_counted_per_level(tiny_run, pairs, monkeypatch):
    samples = make_samples(load_pairs(2)["val"], "qa")
    right = {i for i in range(len(samples)) if i % 3 == 0}
    fake = [s.pair.answer if i in right else s.pair.answer + " " for i, s in enumerate(samples)]
    monkeypatch.setattr(tiny_run.model, "answer_many", lambda prompts: fake[: len(prompts)])
    report = evaluate_answers(tiny_run.model, samples, "val")
    for level in (1, 2):
        members = [i for i, s in enumerate(samples) if s.pair.level == level]
        entry = report.per_level[level]
        assert entry["total"] == len(members)
        assert entry["correct"] == len(right & set(members))
    assert report.correct == len(right)
    assert "level 1 (greetings and identity)" in report.table()
    assert json.loads(json.dumps(report.to_dict()))["per_level"]["2"]["total"] > 0


def test_replies_are_seeded_and_batched_greedy_matches_single(tiny_run):
    model = tiny_run.model
    assert reply(model, "Hi!", temperature=1.0, seed=3) == reply(model, "Hi!", temperature=1.0,
                                                                 seed=3)
    assert reply(model, "Hi!", temperature=1.0, top_k=1, seed=5) == reply(model, "Hi!")
    questions = ["Hi!", "Bye!", "What is your name?", "Hello there!"]
    prompts = [model.prompt(q) for q in questions]
    assert model.answer_many(prompts) == [model.reply(q) for q in questions]
    assert all("\n" not in model.reply(q) for q in questions)
    maps = model.attention("Hi!", reply="Hello!")
    text = "Q: Hi!\nA: Hello!\n"
    assert maps["text"] == text and len(maps["tokens"]) == len(text) + 1
    assert maps["tokens"][:4] == ["<s>", "Q", ":", "\u2423"]
    assert maps["weights"].shape == (1, 2, len(text) + 1, len(text) + 1)
    assert torch.all(maps["weights"].triu(1) == 0)  # causal
    with pytest.raises(ValueError, match="non-empty"):
        model.reply("  ")


# --- checkpoints and the command line ---------------------------------------------------------


def test_checkpoint_round_trip_gives_identical_outputs(tiny_run, tmp_path):
    model = tiny_run.model
    tokens = torch.tensor([[2] + model.tokenizer.encode("Q: Hi!\nA: Hello!")])
    with torch.no_grad():
        reference = model.model(tokens)
    full = load_tinytalks_model(model.save(tmp_path / "full.pt", half=False), "cpu")
    with torch.no_grad():
        assert torch.equal(full.model(tokens), reference)
    assert full.reply("Hi!") == model.reply("Hi!") and full.framing == "qa"
    assert full.tokenizer.characters == model.tokenizer.characters
    assert full.info["steps"] == 30

    half = load_tinytalks_model(model.save(tmp_path / "half.pt"), "cpu")
    again = load_tinytalks_model(half.save(tmp_path / "again.pt"), "cpu")
    with torch.no_grad():
        assert_close(half.model(tokens), reference, atol=2e-2, rtol=2e-2)
        assert torch.equal(again.model(tokens), half.model(tokens))  # fp16 is a fixed point
    assert (tmp_path / "half.pt").stat().st_size < (tmp_path / "full.pt").stat().st_size
    assert not list(tmp_path.glob("*.tmp"))  # the atomic save leaves nothing behind


def test_bad_checkpoints_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="transformer-course tinytalks dialogue"):
        load_tinytalks_model(tmp_path / "missing.pt")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable TinyTalks checkpoint"):
        load_tinytalks_model(tmp_path / "garbage.pt")
    torch.save({"model": {}}, tmp_path / "foreign.pt")
    with pytest.raises(ValueError, match="not a TinyTalks checkpoint"):
        load_tinytalks_model(tmp_path / "foreign.pt")


def test_chat_command_answers_arguments_and_an_interactive_session(tiny_run, tmp_path, capsys,
                                                                   monkeypatch):
    path = tiny_run.model.save(tmp_path / "tiny.pt")
    model = load_tinytalks_model(path, "cpu")
    assert main(["tinytalks", "chat", "Hi!", "Bye!", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "TinyTalks" in out and "CC BY 4.0" in out  # the attribution
    assert f"you> Hi!\nbot> {model.reply('Hi!')}\nyou> Bye!\nbot> {model.reply('Bye!')}" in out

    monkeypatch.setattr(sys, "stdin", io.StringIO("Hé!\n\nnever read\n"))
    assert main(["tinytalks", "chat", "--checkpoint", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("bot> ") == 1 and "é" in captured.err  # unknown characters
    monkeypatch.setattr(sys, "stdin", io.StringIO("Hi!\nBye!"))  # ends without a newline
    assert main(["tinytalks", "chat", "--checkpoint", str(path)]) == 0
    assert capsys.readouterr().out.count("bot> ") == 2

    assert main(["tinytalks", "chat", "Hi!", "--checkpoint", str(tmp_path / "no.pt")]) == 1
    assert "transformer-course tinytalks dialogue" in capsys.readouterr().err
    assert main(["tinytalks", "chat", "Hi!", "--checkpoint", str(path),
                 "--temperature", "-1"]) == 2


def test_dialogue_chat_keeps_the_previous_exchange(tiny_run, monkeypatch):
    seen = []
    model = tiny_run.model
    monkeypatch.setattr(model, "framing", "dialogue")
    monkeypatch.setattr(type(model), "reply",
                        lambda self, text, previous, **_: seen.append(previous) or text.upper())
    chat = Chat(model)
    assert chat.say("I have a dog.") == "I HAVE A DOG."
    chat.say("His name is Max.")
    assert seen == [None, ("I have a dog.", "I HAVE A DOG.")]


@pytest.mark.slow
def test_stage_command_writes_its_log_summary_and_checkpoint(pairs, tmp_path, capsys):
    args = ["tinytalks", "dialogue", "--steps", "4", "--minutes", "0", "--embed-dim", "16",
            "--num-layers", "1", "--num-heads", "2", "--batch-size", "64", "--eval-every", "2",
            "--output", str(tmp_path)]
    assert main(args) == 0
    log = (tmp_path / "dialogue.log").read_text()
    assert log.startswith("$ transformer-course tinytalks dialogue --steps 4")
    assert "CC BY 4.0" in log and "level 5 (multi-turn context)" in log
    assert "context check, val: 1 follow-ups" in log
    summary = json.loads((tmp_path / "dialogue.json").read_text())
    assert summary["steps"] == 4 and summary["command"] in log
    assert [h["step"] for h in summary["history"]] == [2, 4]
    assert set(summary["answers"]) == {"train", "val", "test"}
    assert summary["answers"]["val"]["total"] == 45
    assert summary["context"]["train"]["exchanges"] == 10
    assert summary["machine"]["threads"] >= 1 and summary["git_commit"]
    model = load_tinytalks_model(summary["checkpoint"]["path"])
    assert model.framing == "dialogue" and model.info["command"] == summary["command"]

    assert main(["tinytalks", "qa", "--levels", "7", "--output", str(tmp_path)]) == 2
    assert "levels must be an integer from 1 to 5" in capsys.readouterr().err
    assert main(["tinytalks", "qa", "--num-heads", "5", "--output", str(tmp_path)]) == 2
    assert "divisible" in capsys.readouterr().err


@pytest.mark.slow
def test_proof_command_prints_the_verdict_and_the_ablation(tmp_path, capsys):
    code = main(["tinytalks", "proof", "--seq-len", "3", "--num-symbols", "4", "--embed-dim",
                 "16", "--batch-size", "256", "--output", str(tmp_path)])
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "proof.json").read_text())
    passed = summary["proof"]["passed"]
    assert code == (0 if passed else 1)
    assert ("PASS: " if passed else "FAIL: ") in out
    assert summary["proof"]["steps"] == math.ceil(19_200 / 256)
    assert summary["uniform_attention"]["config"]["uniform_attention"] is True
    assert "uniform attention: " in out and (tmp_path / "proof.log").read_text().count("\n") > 5


def test_the_committed_models_match_their_logged_runs():
    from pathlib import Path

    from transformer_course.recipes import tinytalks

    root = Path(__file__).resolve().parents[1]
    logs = root / "results" / "tinytalks"
    proof = json.loads((logs / "proof.json").read_text())
    assert proof["proof"]["passed"] and proof["proof"]["seconds"] <= tinytalks.PROOF_TIME_BUDGET
    assert not proof["uniform_attention"]["passed"]
    for stage in ("qa", "dialogue"):
        summary = json.loads((logs / f"{stage}.json").read_text())
        model = tinytalks.load_tinytalks_model(root / "checkpoints" / "tinytalks" / f"{stage}.pt")
        assert model.framing == stage
        assert model.model.num_parameters() == summary["parameters"]
        assert model.info["val_loss"] == summary["val_loss"]
    qa = tinytalks.load_tinytalks_model(root / "checkpoints" / "tinytalks" / "qa.pt")
    assert qa.reply("What do cows eat?") == "Cows eat grass and hay."
