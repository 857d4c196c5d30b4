import json
import math
import os
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

from transformer_course.models.transformer import Transformer, TransformerConfig
from transformer_course.training.checkpoint import save_atomic
from transformer_course.training.losses import LabelSmoothingLoss
from transformer_course.training.scheduler import (
    inverse_sqrt_schedule,
    make_scheduler,
    warmup_cosine_schedule,
)
from transformer_course.training.trainer import Trainer, autocast
from transformer_course.utils.batching import BucketBatchSampler, collate_translation
from transformer_course.utils.device import set_seed
from transformer_course.utils.synthetic import make_sequence_task


def test_label_smoothing_matches_pytorch_and_ignores_padding():
    logits = torch.randn(4, 7, 11)
    target = torch.randint(1, 11, (4, 7))
    target[:, 5:] = 0
    ours = LabelSmoothingLoss(0.1, ignore_index=0)(logits, target)
    ref = F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)
    # padding positions do not count: changing their logits changes nothing
    changed = logits.clone()
    changed[:, 5:] = 100
    torch.testing.assert_close(LabelSmoothingLoss(0.1)(changed, target), ours)
    # without smoothing it is the plain cross-entropy
    torch.testing.assert_close(
        LabelSmoothingLoss(0.0)(logits, target),
        F.cross_entropy(logits.view(-1, 11), target.view(-1), ignore_index=0),
    )


def test_label_smoothing_prefers_a_less_confident_prediction():
    target = torch.tensor([[3]])
    confident = torch.full((1, 1, 5), -20.0)
    confident[..., 3] = 20.0
    hedged = torch.zeros(1, 1, 5)
    hedged[..., 3] = 4.0
    loss = LabelSmoothingLoss(0.2)
    assert loss(hedged, target) < loss(confident, target)
    assert F.cross_entropy(hedged.view(1, 5), target.view(1)) > F.cross_entropy(
        confident.view(1, 5), target.view(1)
    )


def test_label_smoothing_errors():
    with pytest.raises(ValueError, match="padding"):
        LabelSmoothingLoss()(torch.randn(1, 2, 5), torch.zeros(1, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        LabelSmoothingLoss()(torch.randn(2, 5), torch.ones(3, dtype=torch.long))


def test_inverse_sqrt_schedule_peaks_at_warmup():
    f = inverse_sqrt_schedule(d_model=512, warmup_steps=4000)
    values = [f(s) for s in range(1, 20000)]
    peak = max(range(len(values)), key=values.__getitem__) + 1
    assert peak == 4000
    assert math.isclose(f(4000), 512**-0.5 * 4000**-0.5)
    assert f(100) < f(200) and f(8000) < f(6000)


def test_warmup_cosine_schedule():
    f = warmup_cosine_schedule(10, 110, min_ratio=0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) == pytest.approx(0.55) and f(110) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        warmup_cosine_schedule(10, 10)


def test_autocast_is_a_no_op_on_cpu():
    with autocast(torch.device("cpu")):
        y = torch.randn(3, 4) @ torch.randn(4, 5)
    assert y.dtype == torch.float32


# --- a tiny translation task trained with the Trainer ----------------------------------------


def make_task(seed=0):
    src, tgt = make_sequence_task("reverse", 64, 6, vocab_size=12, seed=seed)
    examples = [(s.tolist(), t.tolist()) for s, t in zip(src, tgt, strict=True)]
    sampler = BucketBatchSampler([6] * 64, batch_size=16, seed=seed)

    def make_batches(epoch):
        sampler.set_epoch(epoch)
        return [collate_translation([examples[i] for i in b]) for b in sampler]

    return make_batches


def make_trainer(tmp_path, seed=0, dropout=0.1, **kwargs):
    set_seed(seed)
    config = TransformerConfig(12, 12, d_model=32, num_heads=4, num_encoder_layers=1,
                               num_decoder_layers=1, d_ff=64, dropout=dropout, max_len=16)
    model = Transformer(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    scheduler = make_scheduler(optimizer, inverse_sqrt_schedule(32, warmup_steps=8))
    criterion = LabelSmoothingLoss(0.1)

    def compute_loss(model, batch):
        logits = model(batch.src, batch.tgt_in)
        return criterion(logits, batch.tgt_out), batch.num_target_tokens

    return Trainer(model, optimizer, compute_loss, scheduler, grad_clip=1.0, progress=False,
                   checkpoint_path=tmp_path / "latest.pt", history_path=tmp_path / "history.json",
                   **kwargs)


def test_training_reduces_the_loss_and_writes_history(tmp_path):
    trainer = make_trainer(tmp_path)
    make_batches = make_task()
    before = trainer.evaluate(make_batches(0))
    history = trainer.fit(make_batches, epochs=6,
                          validate=lambda t: {"val_loss": t.evaluate(make_batches(99))})
    assert len(history) == 6 and history[-1]["step"] == 24
    assert history[-1]["val_loss"] < before - 0.5
    assert (tmp_path / "history.json").exists() and (tmp_path / "latest.pt").exists()


def test_validation_can_report_bleu_each_epoch(tmp_path):
    from transformer_course.evaluation.bleu import corpus_bleu
    from transformer_course.models.generation import greedy_decode

    trainer = make_trainer(tmp_path, dropout=0.0)
    make_batches = make_task()
    held_out = make_batches(123)[0]

    def validate(t):
        hypotheses = greedy_decode(t.model, held_out.src, max_len=7)
        as_text = [" ".join(map(str, h)) for h in hypotheses]
        references = [" ".join(str(x) for x in row if x > 3) for row in held_out.tgt_out.tolist()]
        return {"bleu": corpus_bleu(as_text, references).score}

    history = trainer.fit(make_batches, epochs=2, validate=validate)
    assert all("bleu" in h and 0 <= h["bleu"] <= 100 for h in history)
    assert len(json.loads((tmp_path / "history.json").read_text())) == 2


def test_resuming_gives_exactly_the_uninterrupted_parameters(tmp_path):
    make_batches = make_task()
    straight = make_trainer(tmp_path / "a")
    straight.fit(make_batches, epochs=3)

    first = make_trainer(tmp_path / "b")
    first.fit(make_batches, epochs=3, max_steps=6)  # stops mid-epoch 2 (4 steps per epoch)
    assert first.state.step == 6 and first.state.batch_in_epoch == 2
    torch.manual_seed(12345)  # disturb the RNG: the checkpoint must restore it

    resumed = make_trainer(tmp_path / "b", seed=999)  # fresh weights, then load
    resumed.load_checkpoint(tmp_path / "b" / "latest.pt")
    resumed.fit(make_batches, epochs=3)
    assert resumed.state.step == straight.state.step == 12
    for (name, a), (_, b) in zip(straight.model.state_dict().items(),
                                 resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    assert [h["train_loss"] for h in resumed.state.history] == pytest.approx(
        [h["train_loss"] for h in straight.state.history]
    )


def test_a_crash_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    save_atomic({"step": 1}, path)

    def crash(obj, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_atomic({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]  # no temporary file left


def test_a_killed_process_never_leaves_a_corrupt_checkpoint(tmp_path):
    """Kill a process that saves large checkpoints in a loop; what is left always loads."""
    path = tmp_path / "latest.pt"
    script = (
        "import sys, torch\n"
        "from transformer_course.training.checkpoint import save_atomic\n"
        "big = torch.randn(4_000_000)\n"
        "for i in range(1000):\n"
        "    save_atomic({'step': i, 'w': big}, sys.argv[1])\n"
        "    print(i, flush=True)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE,
                            text=True)
    for _ in range(3):
        proc.stdout.readline()
    proc.kill()
    proc.wait()
    assert torch.load(path)["w"].shape == (4_000_000,)
    leftovers = [p for p in tmp_path.iterdir() if p.name != "latest.pt"]
    for p in leftovers:  # a temporary file may be left behind, never under the real name
        assert p.suffix == ".tmp"
        os.unlink(p)


def test_loading_a_bad_checkpoint_is_a_clear_error(tmp_path):
    trainer = make_trainer(tmp_path)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        trainer.load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable Trainer checkpoint: it is a text file"):
        trainer.load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a Trainer checkpoint"):
        trainer.load_checkpoint(tmp_path / "other.pt")


def test_non_finite_loss_stops_training(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.compute_loss = lambda model, batch: (torch.tensor(float("nan"), requires_grad=True), 1)
    with pytest.raises(FloatingPointError, match="nan"):
        trainer.train_step(None)


# --- checkpoints load with weights_only=True ---------------------------------------------------


def test_a_trainer_checkpoint_is_plain_and_restores_every_generator(tmp_path):
    import random

    import numpy as np

    trainer = make_trainer(tmp_path)
    trainer.state.history.append({"epoch": 1, "bleu": np.float64(3.5)})  # NumPy, as metrics give
    trainer.extra_state = {"seed": np.int64(7), "folder": tmp_path}
    path = trainer.save_checkpoint()
    draws = (random.random(), np.random.rand(), torch.rand(3))
    data = torch.load(path, weights_only=True)  # would raise on a NumPy array or object
    assert data["state"]["history"][0]["bleu"] == 3.5
    assert type(data["state"]["history"][0]["bleu"]) is float
    assert data["extra"] == {"seed": 7, "folder": str(tmp_path)}

    random.seed(1), np.random.seed(1), torch.manual_seed(1)  # disturb every generator
    resumed = make_trainer(tmp_path, seed=5)
    resumed.load_checkpoint(path)
    assert random.random() == draws[0] and np.random.rand() == draws[1]
    assert torch.equal(torch.rand(3), draws[2])
    assert resumed.state.history == [{"epoch": 1, "bleu": 3.5}]


def test_metadata_that_would_not_load_is_refused_when_saving(tmp_path):
    trainer = make_trainer(tmp_path)
    trainer.extra_state = {"callback": print}
    with pytest.raises(TypeError, match=r"extra_state\['callback'\] is a builtins"):
        trainer.save_checkpoint()
    assert not (tmp_path / "latest.pt").exists()


class _Payload:
    """Unpickling this creates ``marker``: code an attacker's checkpoint would run."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        from pathlib import Path

        return Path.touch, (self.marker,)


def test_a_hostile_trainer_checkpoint_is_refused_without_running_it(tmp_path):
    trainer = make_trainer(tmp_path)
    data = trainer.checkpoint()
    marker = tmp_path / "ran"
    data["rng"]["python"] = _Payload(marker)
    torch.save(data, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)  # the unsafe way runs the payload
    assert marker.exists()
    marker.unlink()
    before = [p.clone() for p in trainer.model.parameters()]
    with pytest.raises(ValueError, match=r"evil\.pt is not a weights-only checkpoint: it contains "
                                         r"objects that are not allowed"):
        trainer.load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_resuming_from_another_kind_or_configuration_names_what_differs(tmp_path):
    trainer = make_trainer(tmp_path)
    other = make_trainer(tmp_path / "other")
    torch.save({"config": {}, "model": other.model.state_dict(), "tokenizer": "{}",
                "info": {}}, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"model\.pt is not a Trainer checkpoint: it is a "
                                         r"translator model"):
        trainer.load_checkpoint(tmp_path / "model.pt")

    config = TransformerConfig(12, 12, d_model=32, num_heads=4, num_encoder_layers=1,
                               num_decoder_layers=1, d_ff=48, max_len=16)  # d_ff 48, not 64
    model = Transformer(config)
    bigger = Trainer(model, torch.optim.Adam(model.parameters()), trainer.compute_loss,
                     progress=False)
    bigger.save_checkpoint(tmp_path / "d_ff_48.pt")
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(ValueError, match=r"does not fit this model \(another configuration\?\): "
                                         r"parameter '.*linear1\.weight' is \(48, 32\) in the "
                                         r"checkpoint but \(64, 32\) in the model"):
        trainer.load_checkpoint(tmp_path / "d_ff_48.pt")
    after = trainer.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "changed before refusing"
    assert trainer.state.step == 0


def test_stale_temporary_files_of_a_killed_save_are_removed(tmp_path):
    from transformer_course.training.checkpoint import STALE_TEMPORARY_SECONDS

    path = tmp_path / "latest.pt"
    stale = tmp_path / "latest.pt.k3j_9xq2.tmp"  # save_atomic's pattern, left by a kill
    fresh = tmp_path / "latest.pt.a1b2c3d4.tmp"  # another process may be writing this one
    others = [tmp_path / "latest.pt.tmp", tmp_path / "other.pt.k3j_9xq2.tmp",
              tmp_path / "latest.pt.k3j_9xq2.tmp.keep", tmp_path / "xlatest.pt.k3j_9xq2.tmp"]
    old = time.time() - STALE_TEMPORARY_SECONDS - 60
    for p in [stale, fresh, *others]:
        p.write_bytes(b"half a checkpoint")
        os.utime(p, (old, old))
    os.utime(fresh, None)  # modified just now
    save_atomic({"step": 1}, path)
    assert not stale.exists() and fresh.exists() and all(p.exists() for p in others)

    stale.write_bytes(b"half a checkpoint")
    os.utime(stale, (old, old))
    make_trainer(tmp_path).save_checkpoint(tmp_path / "run.pt")
    trainer = make_trainer(tmp_path)
    stale_run = tmp_path / "run.pt.zzzzzzzz.tmp"
    stale_run.write_bytes(b"")
    os.utime(stale_run, (old, old))
    trainer.load_checkpoint(tmp_path / "run.pt")  # loading cleans up too
    assert not stale_run.exists() and stale.exists()  # only temporaries of that name
