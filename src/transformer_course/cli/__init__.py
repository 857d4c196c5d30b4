"""The ``transformer-course`` command: the things people run outside notebooks."""

from __future__ import annotations

import argparse
import sys
import time

from ..utils.dataset import TINYTALKS_ATTRIBUTION
from ..utils.device import get_device


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="transformer-course",
        description="Transformers from Scratch: command-line tools of the course.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("doctor", help="check the installation and show the device in use")
    download = commands.add_parser(
        "download", help="download and verify the data sets into the cache (for offline use)"
    )
    download.add_argument("datasets", nargs="*", choices=["multi30k", "tinytalks"],
                          default=["multi30k", "tinytalks"], help="which data sets (default: both)")

    grade = commands.add_parser(
        "grade", help="autograde a folder of submitted assignment notebooks (for instructors)")
    grade.add_argument("assignment", help="the assignment, e.g. ch02_attention (or just ch02)")
    grade.add_argument("folder", help="the submissions: one <student id>.ipynb per student")
    grade.add_argument("--output", default=None,
                       help="where grades.csv and feedback/ go (default: grades/ASSIGNMENT)")
    grade.add_argument("--course-dir", default=None,
                       help="grade in this nbgrader course directory and keep it, e.g. to grade "
                            "the written answers in formgrader afterwards (default: a temporary "
                            "one)")
    grade.add_argument("--repository", default=None,
                       help="the course repository, with nbgrader_config.py and solutions/ "
                            "(default: found from the current directory)")
    grade.add_argument("--allow-unisolated", action="store_true",
                       help="grade even where submissions cannot be isolated from the "
                            "machine's files (no Landlock): they could read other students' "
                            "work (see book/instructors.md)")

    translator = commands.add_parser("translator", help="the Multi30k German-English translator")
    actions = translator.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="train with a recipe profile")
    train.add_argument("--profile", default="cpu", help="smoke, cpu or gpu (default: cpu)")
    train.add_argument("--output", default=None,
                       help="run folder (default: runs/translator-PROFILE)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=None, help="override the profile's epochs")
    train.add_argument("--resume", action="store_true", help="continue from the run folder")
    train.add_argument("--device", default=None, help="cpu, cuda or mps (default: automatic)")
    train.add_argument("--architecture", default="ours", choices=["ours", "pytorch"],
                       help="ours (from scratch, default) or pytorch (nn.Transformer's layers)")
    for name, text in (("translate", "translate German sentences"),
                       ("evaluate", "score a checkpoint on a Multi30k split with sacreBLEU")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--checkpoint", default=None,
                            help="a model.pt written by train (default: the course's checkpoint)")
        action.add_argument("--beam", type=int, default=4, help="beam size (1: greedy)")
        action.add_argument("--device", default=None)
        if name == "translate":
            action.add_argument("sentences", nargs="+", help="German sentences")
            action.add_argument("--attention-image", default=None,
                                help="save the cross-attention of the first sentence as a PNG")
        else:
            action.add_argument("--split", nargs="+", default=["test_2016_flickr"],
                                help="one or more Multi30k splits (default: test_2016_flickr)")
            action.add_argument("--limit", type=int, default=None, help="first N sentences only")
            action.add_argument("--json", default=None,
                                help="also write the scores of every split to this JSON file")
    serve = actions.add_parser(
        "serve", help="serve translations over HTTP, batching concurrent requests")
    serve.add_argument("--checkpoint", default=None,
                       help="a model.pt written by train (default: the course's checkpoint)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--max-batch-size", type=int, default=16,
                       help="most requests translated together (1: no batching)")
    serve.add_argument("--max-wait-ms", type=float, default=5.0,
                       help="how long a request waits for others to join its batch")
    serve.add_argument("--beam", type=int, default=1, help="beam size (default 1: greedy)")
    serve.add_argument("--max-chars", type=int, default=1000,
                       help="longest text accepted (longer: HTTP 413)")
    serve.add_argument("--max-body-bytes", type=int, default=None,
                       help="largest request body, refused (HTTP 413) before it is read "
                            "(default: 12 x --max-chars + 1024)")
    serve.add_argument("--max-queue", type=int, default=128,
                       help="most requests waiting for a batch (more: HTTP 503, Retry-After)")
    serve.add_argument("--timeout-s", type=float, default=30.0,
                       help="deadline of a request in seconds (past it: HTTP 504)")
    serve.add_argument("--threads", type=int, default=None, help="torch threads")
    serve.add_argument("--quantize", action="store_true",
                       help="serve the dynamically quantized int8 model (chapter 17)")
    serve.add_argument("--device", default=None)
    add_tinytalks_parser(commands)
    return parser


def add_tinytalks_parser(commands) -> None:
    tinytalks = commands.add_parser(
        "tinytalks", help="the TinyTalks GPT capstone: attention proof, Q&A, dialogue, chat")
    actions = tinytalks.add_subparsers(dest="action", required=True, metavar="ACTION")

    def common(action, epochs, batch_size, layers, heads):
        # The flags of the TinyTalks milestone scripts, plus the course's usual ones.
        action.add_argument("--epochs", type=int, default=epochs,
                            help=f"passes over the training data (default: {epochs})")
        action.add_argument("--batch-size", type=int, default=batch_size,
                            help=f"examples per step (default: {batch_size})")
        action.add_argument("--embed-dim", type=int, default=64,
                            help="embedding dimension d_model (default: 64)")
        action.add_argument("--num-layers", type=int, default=layers[0], help=layers[1])
        action.add_argument("--num-heads", type=int, default=heads[0], help=heads[1])
        action.add_argument("--seed", type=int, default=0, help="seed of every random choice")
        action.add_argument("--device", default=None, help="cpu, cuda or mps (default: automatic)")
        action.add_argument("--threads", type=int, default=None,
                            help="CPU threads for PyTorch (default: PyTorch's choice)")
        action.add_argument("--output", default="runs/tinytalks",
                            help="folder for the log and the JSON summary "
                                 "(default: runs/tinytalks)")

    proof = actions.add_parser(
        "proof", help="attention proof: reverse sequences, pass at >= 99%% held-out accuracy")
    common(proof, 1, 64,
           (1, "encoder and decoder layers (default: 1; the milestone's 3 also pass, but take "
               "three times as long, about the whole 15-second budget)"),
           (2, "attention heads (default: 2, sharper maps than 4 on this task)"))
    proof.add_argument("--seq-len", type=int, default=10, help="symbols per sequence (default 10)")
    proof.add_argument("--num-symbols", type=int, default=10,
                       help="distinct symbols (default 10)")
    proof.add_argument("--no-ablation", action="store_true",
                       help="skip the uniform-attention model that must fail")
    for framing, text in (("qa", "Q&A: a character-level GPT answers 'Q: ... A:' prompts"),
                          ("dialogue", "dialogue: the context carries the previous exchange")):
        stage = actions.add_parser(framing, help=text)
        common(stage, None, 32, (3, "transformer blocks (default: 3)"),
               (4, "attention heads (default: 4)"))
        stage.add_argument("--levels", type=int, default=5,
                           help="train on difficulty levels 1..N of TinyTalks (default: 5, all)")
        stage.add_argument("--minutes", type=float, default=3.0,
                           help="training-time budget in minutes, 0 for none (default: 3)")
        stage.add_argument("--steps", type=int, default=None, help="step budget (default: none)")
        stage.add_argument("--lr", type=float, default=None, help="peak learning rate")
        stage.add_argument("--dropout", type=float, default=None, help="dropout rate")
        stage.add_argument("--eval-every", type=int, default=None,
                           help="steps between validation losses")
        stage.add_argument("--checkpoint", default=None,
                           help=f"where to save the model (default: OUTPUT/{framing}.pt)")
    chat = actions.add_parser("chat", help="talk to a trained TinyTalks model")
    chat.add_argument("questions", nargs="*",
                      help="what to say, one turn each (none: an interactive session; an "
                           "empty line or end of input quits)")
    chat.add_argument("--checkpoint", default=None,
                      help="a model saved by the qa or dialogue command (default: the "
                           "course's checkpoints/tinytalks/dialogue.pt)")
    chat.add_argument("--temperature", type=float, default=0.0,
                      help="0 (default): greedy replies; higher: more varied samples")
    chat.add_argument("--top-k", type=int, default=None,
                      help="sample only among the k most likely characters")
    chat.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    chat.add_argument("--device", default=None)


def default_translator_checkpoint():
    from pathlib import Path

    return Path(__file__).resolve().parents[3] / "checkpoints" / "translator-cpu" / "model.pt"


def undecodable_text(text: str) -> str | None:
    """Why a command-line text is not valid UTF-8, or None when it is.

    Python hands undecodable bytes of the command line over as lone surrogates ("\\udcff"
    for the byte 0xff); encoding them back recovers the bytes and their offsets.
    """
    import os

    try:
        text.encode("utf-8")
        return None
    except UnicodeEncodeError as error:
        try:
            raw = os.fsencode(text)
            raw.decode("utf-8")
        except UnicodeDecodeError as bad:
            return (f"byte 0x{raw[bad.start]:02x} at byte offset {bad.start} cannot be decoded "
                    "(is the terminal in another encoding?)")
        except UnicodeEncodeError:
            pass
        return f"character {error.start} is a lone surrogate {text[error.start]!r}"


def check_texts(texts: list[str]) -> str | None:
    """Why the texts given to ``translator translate`` cannot be translated, or None."""
    for number, text in enumerate(texts, start=1):
        problem = undecodable_text(text)
        if problem:
            return f"text {number} is not valid UTF-8: {problem}"
        if not text.strip():
            return f"text {number} is empty: give a German sentence to translate"
    return None


def translator_command(args) -> int:
    from pathlib import Path

    from ..recipes import translator
    from ..training.checkpoint import CheckpointError
    from ..utils.dataset import DatasetError

    if args.action == "train":
        if args.profile not in translator.PROFILES:
            print(f"error: unknown profile {args.profile!r}; choose from "
                  f"{sorted(translator.PROFILES)}", file=sys.stderr)
            return 2
        output = Path(args.output or f"runs/translator-{args.profile}")
        try:
            output.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            print(f"error: cannot create the run folder {output}: {error.strerror or error}",
                  file=sys.stderr)
            return 1
        try:
            summary = translator.train_translator(args.profile, output, seed=args.seed,
                                                  device=args.device, resume=args.resume,
                                                  epochs=args.epochs,
                                                  architecture=args.architecture)
        except (CheckpointError, DatasetError) as error:
            # A --resume from a file that is not this run's checkpoint, or data not to be had.
            print(f"error: {error}", file=sys.stderr)
            return 1
        beam = summary["evaluation"]["beam"]
        print(f"BLEU {beam['bleu']:.2f} on test_2016_flickr [{beam['signature']}] after "
              f"{summary['training_minutes']:.1f} minutes of training; model in {output}")
        return 0
    if args.action == "evaluate":
        from ..utils.dataset import MULTI30K_SPLITS

        unknown = [split for split in args.split if split not in MULTI30K_SPLITS]
        if unknown:
            print(f"error: unknown Multi30k split {unknown[0]!r}; choose from "
                  f"{sorted(MULTI30K_SPLITS)}", file=sys.stderr)
            return 2
    if args.action == "translate":
        problem = check_texts(args.sentences)  # before the model takes seconds to load
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    checkpoint = Path(args.checkpoint) if args.checkpoint else default_translator_checkpoint()
    if args.action == "serve":
        return serve_command(args, checkpoint)
    try:
        model = translator.load_translator(checkpoint, args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.action == "translate":
        # A text too long for the model is translated sentence by sentence, never cut; one
        # whose sentences are still too long is refused.
        try:
            pieces = [model.source_pieces(text, n) for n, text in enumerate(args.sentences, 1)]
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        for number, text_pieces in enumerate(pieces, start=1):
            if len(text_pieces) > 1:
                print(f"note: text {number} is longer than the {model.max_source_tokens} tokens "
                      f"the model reads: translated as {len(text_pieces)} sentences",
                      file=sys.stderr)
        for source, target in zip(args.sentences, model.translate(args.sentences, args.beam),
                                  strict=True):
            print(f"{source}\n  -> {target}")
        if args.attention_image:
            try:
                translator.save_cross_attention(model, args.sentences[0], args.attention_image,
                                                args.beam)
            except ValueError as error:  # a text too long to show in one map
                print(f"error: no attention image: {error}", file=sys.stderr)
                return 2
            except OSError as error:
                print(f"error: cannot write {args.attention_image}: {error.strerror or error}",
                      file=sys.stderr)
                return 1
            print(f"cross-attention saved to {args.attention_image}")
        return 0

    results, missing = {}, []
    for split in args.split:
        # A test set that cannot be had (offline, corrupt download) must not lose the others.
        try:
            results[split] = translator.evaluate_translator(model, split, args.beam,
                                                            limit=args.limit)
        except DatasetError as error:
            print(f"error: {split}: {error}", file=sys.stderr)
            results[split] = {"split": split, "error": str(error)}
            missing.append(split)
    if args.json:
        import json

        # Relative to the working directory when inside it: logs are committed beside the
        # checkpoints and must not carry one machine's absolute paths.
        shown = Path(checkpoint).resolve()
        if shown.is_relative_to(Path.cwd()):
            shown = shown.relative_to(Path.cwd())
        results = {"checkpoint": str(shown), "command": " ".join(sys.argv), **results}
        try:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        except OSError as error:
            print(f"error: cannot write {args.json}: {error.strerror or error}", file=sys.stderr)
            return 1
        print(f"scores written to {args.json}")
    return 1 if missing else 0


def default_tinytalks_checkpoint():
    from pathlib import Path

    return Path(__file__).resolve().parents[3] / "checkpoints" / "tinytalks" / "dialogue.pt"


class _RunLog:
    """Print a line and append it to the run's log file, so the log is what was shown."""

    def __init__(self, path, command: str):
        from pathlib import Path

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", encoding="utf-8")  # closed by close()
        self(f"$ {command}")
        self(f"started {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def _write_json(data: dict, path) -> None:
    import json
    import os
    from pathlib import Path

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _run_info(device) -> dict:
    import os

    from ..recipes import tinytalks
    from ..recipes.translator import _git_commit

    return {"date": time.strftime("%Y-%m-%d", time.gmtime()),
            "machine": tinytalks.machine_info(device), "git_commit": _git_commit(),
            "data": "local copy (TRANSFORMER_COURSE_DATA)" if os.environ.get(
                "TRANSFORMER_COURSE_DATA") else "download cache"}


def tinytalks_command(args, argv: list[str], started: float) -> int:
    import shlex

    command = "transformer-course " + shlex.join(argv)
    if args.action == "chat":
        return tinytalks_chat(args)
    import torch

    if args.threads is not None:
        if args.threads < 1:
            print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
            return 2
        torch.set_num_threads(args.threads)
    from ..recipes import tinytalks

    try:
        if args.action == "proof":
            config = tinytalks.ProofConfig(
                seq_len=args.seq_len, num_symbols=args.num_symbols, d_model=args.embed_dim,
                num_layers=args.num_layers, num_heads=args.num_heads,
                batch_size=args.batch_size, epochs=args.epochs, seed=args.seed)
        else:
            tinytalks.check_levels(args.levels)
            overrides = {k: v for k, v in (("peak_lr", args.lr), ("dropout", args.dropout),
                                           ("eval_every", args.eval_every)) if v is not None}
            config = tinytalks.TinyTalksConfig(
                framing=args.action, levels=args.levels, d_model=args.embed_dim,
                num_layers=args.num_layers, num_heads=args.num_heads,
                batch_size=args.batch_size, epochs=args.epochs, max_steps=args.steps,
                minutes=args.minutes or None, seed=args.seed, **overrides)
        device = get_device(args.device)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from pathlib import Path

    output = Path(args.output)
    log = _RunLog(output / f"{args.action}.log", command)
    try:
        if args.action == "proof":
            return _proof(args, config, device, log, output, command, started)
        return _train_stage(args, config, device, log, output, command, started)
    finally:
        log.close()


def _proof(args, config, device, log, output, command, started) -> int:
    import dataclasses

    from ..recipes import tinytalks

    log(f"attention proof: {config.held_out} held-out sequences, pass at >= "
        f"{config.threshold:.0%} exact-sequence accuracy; budget "
        f"{tinytalks.PROOF_TIME_BUDGET:.0f} s for training and evaluation")
    result = tinytalks.run_proof(config, device, progress=sys.stderr.isatty(), log=log)
    verdict = "PASS" if result.passed else "FAIL"
    timing = "within" if result.within_budget else "OVER"
    log(f"{verdict}: {result.accuracy:.1%} exact-sequence accuracy on {config.held_out} held-out "
        f"sequences (threshold {config.threshold:.0%}) in {result.seconds:.1f} s, {timing} the "
        f"{tinytalks.PROOF_TIME_BUDGET:.0f} s budget; mean attention on the mirrored position "
        f"{result.mirror_weight:.2f}")
    for example in result.examples[:3]:
        log(f"  {example['source']} -> {example['output']}")
    summary = {"stage": "proof", "command": command, **_run_info(device),
               "proof": result.summary()}
    if not args.no_ablation:
        log("ablation: the same model and training with uniform attention weights")
        ablated = tinytalks.run_proof(dataclasses.replace(config, uniform_attention=True),
                                      device, progress=sys.stderr.isatty(), log=log)
        log(f"uniform attention: {ablated.accuracy:.1%} exact-sequence accuracy "
            f"({ablated.symbol_accuracy:.1%} of symbols), "
            f"{'PASS' if ablated.passed else 'FAIL'}, as "
            f"{'NOT ' if ablated.passed else ''}expected")
        summary["uniform_attention"] = ablated.summary()
    summary["wall_seconds"] = time.perf_counter() - started
    log(f"wall time of the command: {summary['wall_seconds']:.1f} s (with Python start-up "
        f"and imports after the first line)")
    _write_json(summary, output / "proof.json")
    log(f"summary written to {output / 'proof.json'}")
    return 0 if result.passed else 1


def _train_stage(args, config, device, log, output, command, started) -> int:
    from pathlib import Path

    from ..recipes import tinytalks

    # Watch the model learn the training answers of levels 1 and 2, the ones it should know
    # word for word (off the training clock).
    train_pairs = tinytalks.load_pairs(config.levels, ("train",))["train"]
    watched = {"train_levels_1_2": tinytalks.make_samples(
        [p for p in train_pairs if p.level <= 2], config.framing)}
    try:
        result = tinytalks.train_tinytalks(config, device, progress=sys.stderr.isatty(), log=log,
                                           callback=tinytalks.track_answers(watched, log))
    except ValueError as error:
        log(f"error: {error}")
        return 1
    model = result.model
    target = tinytalks.TARGET_LOSS[config.framing]
    log(f"validation loss {result.val_loss:.3f} after {result.minutes:.2f} minutes of "
        f"training: {'below' if result.val_loss < target else 'NOT below'} the target {target}")
    summary = {"stage": config.framing, "command": command, **_run_info(device),
               "attribution": TINYTALKS_ATTRIBUTION, **result.summary()}
    summary["answers"] = {}
    for split in ("train", "val", "test"):
        report = tinytalks.evaluate_answers(model, result.samples(split), split)
        summary["answers"][split] = report.to_dict()
        log(f"exact answers, {split} ({len(report.records)} questions):\n{report.table()}")
    log("validation examples (reference | greedy reply):")
    for record in summary["answers"]["val"]["records"][:8]:
        mark = "=" if record["correct"] else "x"
        log(f"  {mark} Q: {record['question']}\n      {record['reference']} | {record['answer']}")
    samples = []
    log("sampled replies (temperature 0.8, top-k 5, seed 0):")
    for sample in result.samples("val")[:5]:
        previous = None
        if sample.context:  # the dialogue's previous exchange, as (question, reply)
            lines = sample.context.splitlines()
            previous = (lines[0].removeprefix("User: "), lines[1].removeprefix("Bot: "))
        text = model.reply(sample.pair.question, previous, temperature=0.8, top_k=5, seed=0)
        samples.append({"question": sample.pair.question, "reply": text})
        log(f"  {sample.pair.question} -> {text}")
    summary["samples"] = samples
    if config.framing == "dialogue":
        summary["context"] = {}
        for split in ("train", "val", "test"):
            check = tinytalks.context_check(model, result.samples(split))
            summary["context"][split] = check
            if not check["exchanges"]:
                continue
            log(f"context check, {split}: {check['exchanges']} follow-ups; reply loss "
                f"{check['answer_loss_with_context']:.3f} after the previous exchange, "
                f"{check['answer_loss_without_context']:.3f} without it; exact replies "
                f"{check['correct_with_context']} with, {check['correct_without_context']} "
                "without")
            for example in check["examples"][:4]:
                log(f"  {example['previous'].strip()}\n  User: {example['question']}\n"
                    f"  Bot (with the previous exchange): {example['with_context']}\n"
                    f"  Bot (without it):                {example['without_context']}\n"
                    f"  reference:                       {example['reference']}")
    checkpoint = Path(args.checkpoint) if args.checkpoint else output / f"{config.framing}.pt"
    model.info.update(command=command, git_commit=summary["git_commit"],
                      attribution=TINYTALKS_ATTRIBUTION)
    model.save(checkpoint)
    summary["checkpoint"] = {"path": str(checkpoint), "bytes": checkpoint.stat().st_size}
    summary["wall_seconds"] = time.perf_counter() - started
    _write_json(summary, output / f"{config.framing}.json")
    log(f"model saved to {checkpoint} ({checkpoint.stat().st_size / 1024:.0f} KiB, fp16); "
        f"summary in {output / (config.framing + '.json')}; "
        f"{summary['wall_seconds'] / 60:.1f} minutes in all")
    return 0


def tinytalks_chat(args) -> int:
    from pathlib import Path

    from ..recipes import tinytalks

    if args.temperature < 0 or (args.top_k is not None and args.top_k < 1):
        print("error: --temperature must be >= 0 and --top-k >= 1", file=sys.stderr)
        return 2
    path = Path(args.checkpoint) if args.checkpoint else default_tinytalks_checkpoint()
    try:
        model = tinytalks.load_tinytalks_model(path, args.device)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    val_loss = model.info.get("val_loss")
    print(f"TinyBot ({model.framing} model {path}"
          + (f", validation loss {val_loss:.3f}" if val_loss is not None else "") + ")")
    print(f"trained on {TINYTALKS_ATTRIBUTION}")
    chat = tinytalks.Chat(model, args.temperature, args.top_k, args.seed)

    def turn(text: str) -> None:
        unknown = model.unknown_characters(text)
        if unknown:
            print(f"(characters the model never saw, read as <unk>: {' '.join(unknown)})",
                  file=sys.stderr)
        print(f"bot> {chat.say(text)}", flush=True)

    if args.questions:
        for question in args.questions:
            print(f"you> {question}")
            turn(question)
        return 0
    print("(an empty line or end of input quits)")
    while True:
        try:
            text = input("you> ")
        except EOFError:
            print()
            return 0
        if not text.strip():
            return 0
        turn(text)


def grade_command(args) -> int:
    try:
        from .. import grading
    except ImportError as error:
        print(f"error: grading needs nbgrader ({error}); install it with: pip install nbgrader",
              file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        report = grading.grade_folder(args.assignment, args.folder, args.output,
                                      args.course_dir, args.repository,
                                      allow_unisolated=args.allow_unisolated, log=print)
    except grading.GradingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2 if "unknown assignment" in str(error) else 1
    print(f"{report.assignment}: {len(report.submissions)} submissions")
    print(grading.format_table(report))
    feedback = sum(s.feedback is not None for s in report.submissions)
    print(f"grades.csv and {feedback} feedback reports in {report.output} "
          f"({time.perf_counter() - start:.0f} s)")
    failed = [s.student for s in report.submissions if s.error] + report.skipped
    if failed:
        print(f"error: {len(failed)} files could not be graded (see above)", file=sys.stderr)
        return 1
    return 0


def download(names: list[str]) -> int:
    from ..utils.dataset import MULTI30K_SPLITS, DatasetError, load_multi30k, load_tinytalks

    try:
        if "multi30k" in names:
            for split in MULTI30K_SPLITS:
                print(f"multi30k {split}: {len(load_multi30k(split)):,} sentence pairs, verified")
        if "tinytalks" in names:
            for split in ("all", "train", "val", "test"):
                print(f"tinytalks {split}: {len(load_tinytalks(split))} pairs, verified")
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def serve_command(args, checkpoint) -> int:
    import torch

    from ..recipes.translator import load_translator
    from ..serving.service import model_thread, serve

    def load():
        if args.threads is not None:
            torch.set_num_threads(args.threads)
        model = load_translator(checkpoint, args.device)
        if args.quantize:
            from ..serving.deployment import quantize_translator

            model = quantize_translator(model)
        return model

    # Loaded in the thread that will run it, so only one thread ever runs torch's kernels
    # (serving.model_thread explains the 3x slowdown otherwise).
    executor = model_thread()
    try:
        model = executor.submit(load).result()
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        executor.shutdown()
        return 1
    try:
        serve(model, args.host, args.port, args.max_batch_size, args.max_wait_ms, args.beam,
              args.max_chars, executor, max_queue=args.max_queue, timeout_s=args.timeout_s,
              max_body_bytes=args.max_body_bytes)
    except ValueError as error:  # a bad setting, e.g. --max-batch-size 0
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        executor.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        from . import doctor

        return doctor.run()
    if args.command == "download":
        return download(args.datasets)
    if args.command == "grade":
        return grade_command(args)
    if args.command == "translator":
        return translator_command(args)
    if args.command == "tinytalks":
        return tinytalks_command(args, argv, started)
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown ones


if __name__ == "__main__":
    sys.exit(main())
