"""The ``cotlab`` command: run the workbook, train models, score images, benchmark.

Each subcommand imports its heavy modules only when it runs, so ``cotlab --help`` is instant.
Errors that name their fix (bad profile, missing checkpoint, unknown model …) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from cotlab import __version__
from cotlab.errors import CotlabError
from cotlab.profiles import PROFILES

PROFILE_HELP = "smoke (CI, seconds), cpu (real results on a laptop) or gpu; default: $COTLAB_PROFILE, else cpu"


def _run(args: argparse.Namespace) -> int:
    from cotlab.runner import parse_value, run_notebooks

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    params = {name: parse_value(value) for name, value in args.param}
    out = run_notebooks(profile=args.profile, only=only, params=params, stop_on_error=args.stop_on_error)
    statuses = [nb["status"] for nb in json.loads((out / "summary.json").read_text())["notebooks"]]
    return 1 if "failed" in statuses else 0


def _train(args: argparse.Namespace) -> int:
    from cotlab.harness import train

    _, metrics, directory = train(args.name, args.profile, seed=args.seed, out=args.out, ship=args.ship)
    for key, value in metrics.items():
        print(f"  {key:>24} {value:.4g}" if isinstance(value, float) else f"  {key:>24} {value}")
    print(f"checkpoint: {directory}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from cotlab.harness import evaluate_checkpoint

    for key, value in evaluate_checkpoint(args.name).items():
        print(f"  {key:>24} {value:.4g}" if isinstance(value, float) else f"  {key:>24} {value}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    from cotlab.generate import generate_folder, load_generator
    from cotlab.geneval import load_metadata

    metas = load_metadata(args.metadata)  # a malformed file fails here, before any model loads
    model = load_generator(args.model)
    options = {"cfg": args.cfg, **({"steps": args.steps} if args.steps is not None else {})}
    out = generate_folder(model, metas, args.outdir, n_samples=args.n_samples, seed=args.seed,
                          save_process=args.save_process, verifier=args.verifier, candidates=args.candidates,
                          **options)
    print(f"wrote {out}; score it with: cotlab geneval score {out}")
    return 0


def _geneval_score(args: argparse.Namespace) -> int:
    from cotlab.geneval import score_folder

    score_folder(args.dir, json_path=args.json)
    return 0


def _bench_evaluator(args: argparse.Namespace) -> int:
    from cotlab.bench import bench_evaluator

    options = {"n": args.n, "seed": args.seed}  # unset ones keep bench_evaluator's defaults
    bench_evaluator(**{k: v for k, v in options.items() if v is not None}, json_path=args.json)
    return 0


def _bench_tokenizers(args: argparse.Namespace) -> int:
    from cotlab.bench import bench_tokenizers

    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    options = {"n": args.n, "seed": args.seed}  # unset ones keep bench_tokenizers' defaults
    bench_tokenizers(names, **{k: v for k, v in options.items() if v is not None}, json_path=args.json)
    return 0


def _bench_decoding(args: argparse.Namespace) -> int:
    from cotlab.bench import bench_decoding

    names = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    steps = tuple(int(k) for k in args.steps.split(","))
    bench_decoding(names, steps=steps, every=args.every, n_samples=args.n_samples, cfg=args.cfg,
                   seed=args.seed, json_path=args.json)
    return 0


def _bench_hybrid(args: argparse.Namespace) -> int:
    from cotlab.bench import bench_hybrid

    bench_hybrid(args.head, every=args.every, n_samples=args.n_samples, steps=args.steps, cfg=args.cfg,
                 seed=args.seed, json_path=args.json)
    return 0


def _bench_verification(args: argparse.Namespace) -> int:
    from cotlab.bench import bench_verification

    bench_verification(args.generator, every=args.every, n_samples=args.n_samples, candidates=args.candidates,
                       scaling_every=args.scaling_every, steps=args.steps, cfg=args.cfg, seed=args.seed,
                       json_path=args.json)
    return 0


def _benchmark_prompt_options(parser: argparse.ArgumentParser, every: int, prompts: int) -> None:
    """The options of a benchmark that generates for the stratified benchmark prompts."""
    parser.add_argument("--every", type=int, default=every,
                        help=f"use every EVERY-th prompt of each tag (default: {every}, i.e. {prompts} prompts)")
    parser.add_argument("--n-samples", type=int, default=4, help="images per prompt (default: 4)")
    parser.add_argument("--cfg", type=float, default=3.0, help="guidance weight (default: 3)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``cotlab`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="cotlab",
        description="cotlab: a workbook for modern image generation on the Shapes world. "
                    "Start with `cotlab run --profile smoke`, or open the notebooks with `make lab`.",
    )
    parser.add_argument("--version", action="version", version=f"cotlab {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser(
        "run", help="execute the notebooks headless into runs/<time>-<profile>/",
        description="Execute the notebooks in order with papermill. Each run writes a new folder "
                    "runs/<time>-<profile>/ (or under $COTLAB_RUNS) with the executed notebooks, HTML pages, "
                    "each notebook's figures and metrics.json, and summary.md. Exits 1 if a notebook failed.",
    )
    run.add_argument("--profile", choices=PROFILES, help=PROFILE_HELP)
    run.add_argument("--only", metavar="NN,NN", help="run only these notebooks, by number, e.g. --only 00,02")
    run.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="set a parameter of every notebook's parameters cell, e.g. -p seed 3 "
                          "(values read as papermill does: True/False/None, numbers, else text); repeatable")
    run.add_argument("--stop-on-error", action="store_true", help="stop at the first failing notebook")
    run.set_defaults(handler=_run)

    train = commands.add_parser(
        "train", help="train a model from scratch and save a checkpoint with its model card",
        description="Train model NAME in the given profile, evaluate it and save a checkpoint "
                    "(model.safetensors, config.json, MODEL_CARD.md). By default it goes to a new "
                    "runs/train/NAME-PROFILE-TIME/; --ship replaces the shipped data/checkpoints/NAME.",
    )
    train.add_argument("name", metavar="NAME", help="the model to train, e.g. clip")
    train.add_argument("--profile", choices=PROFILES, help=PROFILE_HELP)
    train.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    where = train.add_mutually_exclusive_group()
    where.add_argument("--ship", action="store_true", help="write to data/checkpoints/NAME, replacing the old one")
    where.add_argument("--out", metavar="DIR", help="write logs and checkpoint to DIR (must be new or empty)")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser(
        "evaluate", help="re-measure a checkpoint's metrics with the current code",
        description="Run checkpoint NAME's own evaluation again (the one `cotlab train` ran after training), "
                    "with the code as it is now, and update its model card: the training facts stay, the "
                    "metrics are replaced and the card says when and at which commit they were measured.",
    )
    evaluate.add_argument("name", metavar="NAME", help="a shipped checkpoint (e.g. maskgit) or a checkpoint folder")
    evaluate.set_defaults(handler=_evaluate)

    generate = commands.add_parser(
        "generate", help="generate images for GenEval prompts with a trained generator",
        description="Generate N_SAMPLES images per prompt of a GenEval metadata file into GenEval's folder "
                    "layout (OUTDIR/00000/metadata.jsonl, OUTDIR/00000/samples/0000.png …), ready for "
                    "`cotlab geneval score OUTDIR`. An interrupted run resumes: prompts already complete "
                    "are kept, and the rest come out as they would have.",
    )
    generate.add_argument("model", metavar="MODEL",
                          help="a shipped generator (e.g. maskgit, raster_ar) or a checkpoint folder")
    generate.add_argument("--metadata", required=True, metavar="FILE",
                          help="prompts, e.g. data/geneval_shapes/evaluation_metadata.jsonl")
    generate.add_argument("--outdir", required=True, metavar="DIR", help="where the images go")
    generate.add_argument("--n-samples", type=int, default=4, help="images per prompt (default: 4)")
    generate.add_argument("--steps", type=int, help="decoding steps of a masked model (default: 8)")
    generate.add_argument("--cfg", type=float, default=3.0, help="classifier-free guidance weight (default: 3)")
    generate.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    generate.add_argument("--save-process", action="store_true",
                          help="also save every decoding step's image under OUTDIR/00000/process/")
    generate.add_argument("--verifier", choices=["clip", "orm", "clip-prm", "prm", "parm", "parm++", "oracle"],
                          help="choose each image among --candidates paths: best-of-N by CLIPScore (clip), the "
                               "ORM (orm) or the exact evaluator (oracle); step-level search by CLIPScore "
                               "(clip-prm) or the PRM (prm); PARM with pruning (parm); PARM and reflection (parm++)")
    generate.add_argument("--candidates", type=int, default=20, help="paths per image with --verifier (default: 20)")
    generate.set_defaults(handler=_generate)

    geneval = commands.add_parser("geneval", help="the GenEval benchmark on the Shapes world",
                                  description="The GenEval benchmark, transposed to the Shapes world.")
    geneval_commands = geneval.add_subparsers(dest="geneval_command", required=True, metavar="COMMAND")
    score = geneval_commands.add_parser(
        "score", help="score a folder of generated images",
        description="Score images in GenEval's folder layout (DIR/00000/metadata.jsonl, "
                    "DIR/00000/samples/0000.png …): prints each task's score and overall, the unweighted "
                    "mean of the six tasks.",
    )
    score.add_argument("dir", metavar="DIR", help="the folder of generated images")
    score.add_argument("--json", metavar="FILE", help="also write the scores to FILE as JSON")
    score.set_defaults(handler=_geneval_score)

    bench = commands.add_parser("bench", help="speed and accuracy benchmarks (tables and JSON)",
                                description="Benchmarks that compare side by side in one run.")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="COMMAND")
    evaluator = bench_commands.add_parser(
        "evaluator", help="the GenEval evaluator's speed and accuracy",
        description="Benchmark the Shapes-world GenEval evaluator on N rendered scenes.",
    )
    evaluator.add_argument("--n", type=int, help="number of scenes (default: the benchmark's own)")
    evaluator.add_argument("--seed", type=int, help="random seed (default: the benchmark's own)")
    evaluator.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    evaluator.set_defaults(handler=_bench_evaluator)
    tokenizers = bench_commands.add_parser(
        "tokenizers", help="the shipped tokenizers side by side: rate, quality, codebook use, speed",
        description="Benchmark every shipped tokenizer checkpoint on the same N scenes: tokens and bits "
                    "per image, PSNR, SSIM, evaluator agreement, Shapes-FD, codebook usage and "
                    "perplexity, encode and decode images/s. A hybrid gives a discrete-only and a "
                    "discrete+residual row. Missing checkpoints are skipped with a note, unless named "
                    "with --only.",
    )
    tokenizers.add_argument("--n", type=int, help="number of scenes (default: the benchmark's own)")
    tokenizers.add_argument("--seed", type=int, help="random seed (default: the benchmark's own)")
    tokenizers.add_argument("--only", metavar="NAME,NAME",
                            help="benchmark only these checkpoints, e.g. --only vq_f8,hybrid_f8")
    tokenizers.add_argument("--json", metavar="FILE", help="also write the results to FILE as JSON")
    tokenizers.set_defaults(handler=_bench_tokenizers)
    decoding = bench_commands.add_parser(
        "decoding", help="masked decoding in K steps against raster AR: score, forward passes, speed",
        description="Every shipped generator (maskgit, raster_ar, maskgit_f4, raster_ar_f4) on the same "
                    "stratified benchmark prompts: a masked model at each step count, a raster one token "
                    "by token. Prints GenEval overall and per tag, forward passes per image and images/s.",
    )
    decoding.add_argument("--only", metavar="NAME,NAME", help="only these generators (names or folders)")
    decoding.add_argument("--steps", default="4,8,16", help="step counts for masked models (default: 4,8,16)")
    _benchmark_prompt_options(decoding, every=4, prompts=139)
    decoding.set_defaults(handler=_bench_decoding)
    hybrid = bench_commands.add_parser(
        "hybrid", help="DC-AR: the hybrid's residual head against its discrete tokens alone",
        description="Generate with maskgit_hybrid on stratified benchmark prompts and decode the same "
                    "tokens twice, discrete only and with the residual head's continuous residual. Prints "
                    "GenEval overall, Shapes-FD, PSNR to the nearest render and seconds per image.",
    )
    hybrid.add_argument("--head", default="dcar_head", help="the residual head checkpoint (default: dcar_head)")
    hybrid.add_argument("--steps", type=int, default=8, help="MaskGIT decoding steps (default: 8)")
    _benchmark_prompt_options(hybrid, every=2, prompts=277)
    hybrid.set_defaults(handler=_bench_hybrid)
    verification = bench_commands.add_parser(
        "verification", help="ORM, PRM, PARM, PARM++ and the oracle: GenEval, cost, scaling, verifier quality",
        description="The paper's comparison (arXiv 2501.13926) on stratified benchmark prompts: each "
                    "strategy chooses among the same N candidate paths per image; prints the table with the "
                    "paper's numbers beside it, forward passes and verifier calls per image, overall against "
                    "N, and each verifier's precision, recall and AUROC against the exact evaluator.",
    )
    verification.add_argument("--generator", default="maskgit", help="a masked generator (default: maskgit)")
    verification.add_argument("--candidates", type=int, default=20, help="N, paths per image (default: 20)")
    verification.add_argument("--steps", type=int, default=8, help="MaskGIT decoding steps (default: 8)")
    verification.add_argument("--scaling-every", type=int, default=3,
                              help="run the step-level searches at every N on every k-th prompt (default: 3)")
    _benchmark_prompt_options(verification, every=4, prompts=139)
    verification.set_defaults(handler=_bench_verification)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cotlab`` command; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (CotlabError, ValueError, FileNotFoundError) as e:
        message = " ".join(str(e).split("\n")[0].split()) or type(e).__name__
        print(f"cotlab: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
