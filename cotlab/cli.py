"""The ``cotlab`` command: run the workbook, train models, score images, benchmark.

Each subcommand imports its heavy modules only when it runs, so ``cotlab --help`` is instant; the
benchmarks come from ``cotlab.registry.BENCHES``, each with its options in its topic's house;
``cotlab report`` shows the shipped results (``cotlab.results``).
Errors that name their fix (bad profile, missing checkpoint, unknown model …) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import inspect
import json
import signal
import sys
import time
from collections.abc import Sequence

from cotlab import __version__
from cotlab.errors import CotlabError
from cotlab.profiles import PROFILES
from cotlab.registry import BENCHES, get_bench
from cotlab.options import count, seed, weight

PROFILE_HELP = "smoke (CI, seconds), cpu (real results on a laptop) or gpu; default: $COTLAB_PROFILE, else cpu"


def _run(args: argparse.Namespace) -> int:
    from cotlab.runner import parse_value, run_notebooks

    only = [n.strip() for n in args.only.split(",") if n.strip()] if args.only else None
    if args.in_place:
        from cotlab.runner import refresh_notebooks

        refresh_notebooks(args.profile, only)
        return 0
    params = {name: parse_value(value) for name, value in args.param}
    if args.resume and (args.profile or only or params):
        raise CotlabError("--resume finishes a run as it was started: drop --profile, --only and -p")
    out = run_notebooks(profile=args.profile, only=only, params=params, stop_on_error=args.stop_on_error,
                        resume=args.resume)
    statuses = [nb["status"] for nb in json.loads((out / "summary.json").read_text())["notebooks"]]
    return 1 if "failed" in statuses else 0


def _train(args: argparse.Namespace) -> int:
    from cotlab.harness import train

    _, metrics, directory = train(args.name, args.profile, seed=args.seed, out=args.out, ship=args.ship,
                                    checkpoint_every=args.checkpoint_every)
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
    from cotlab.generate import generate_folder
    from cotlab.geneval import load_metadata
    from cotlab.sampling import load_generator

    metas = load_metadata(args.metadata)  # a malformed file fails here, before any model loads
    model = load_generator(args.model)
    options = {key: value for key, value in (("cfg", args.cfg), ("steps", args.steps), ("solver", args.solver))
               if value is not None}  # the rest: the generator's own defaults
    if "solver" in options and "solver" not in inspect.signature(model.paths).parameters:
        raise CotlabError(f"--solver is for flow generators (e.g. sana); {args.model} has none: drop --solver")
    out = generate_folder(model, metas, args.outdir, n_samples=args.n_samples, seed=args.seed,
                          save_process=args.save_process, verifier=args.verifier, candidates=args.candidates,
                          **options)
    print(f"wrote {out}; score it with: cotlab geneval score {out}")
    return 0


def _geneval_score(args: argparse.Namespace) -> int:
    from cotlab.geneval import score_folder

    score_folder(args.dir, json_path=args.json)
    return 0


def _geneval_compare(args: argparse.Namespace) -> int:
    from cotlab.geneval import compare_folders, format_comparison
    from cotlab.io import atomic_write_json

    comparison = compare_folders(args.dir_a, args.dir_b)
    print(format_comparison(comparison, (args.dir_a, args.dir_b)))
    if args.json:
        atomic_write_json(args.json, comparison)
    return 0


class Parser(argparse.ArgumentParser):
    """argparse, with a refused option said in one line (what is wrong, and where the help is) and exit
    status 2, like every other refusal of ``cotlab``."""

    def error(self, message: str):
        self.exit(2, f"cotlab: error: {message} (see: {self.prog} --help)\n")


def build_parser(argv: Sequence[str] = ()) -> argparse.ArgumentParser:
    """The argument parser of ``cotlab`` and its subcommands. A benchmark's options and the list of
    verifiers are imported only when ``argv`` asks for that command, so ``cotlab --help`` is instant."""
    argv = list(argv)
    parser = Parser(
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
    run.add_argument("--resume", metavar="RUN_DIR",
                     help="finish an interrupted run in its folder: the notebooks it completed are kept")
    run.add_argument("--in-place", action="store_true",
                     help="execute the committed notebooks in notebooks/ themselves (their outputs are what readers "
                          "see; `make notebooks` does this in the cpu profile before a commit)")
    run.set_defaults(handler=_run)

    train = commands.add_parser(
        "train", help="train a model from scratch and save a checkpoint with its model card",
        description="Train model NAME in the given profile, evaluate it and save a checkpoint "
                    "(model.safetensors, config.json, MODEL_CARD.md). By default it goes to a new "
                    "runs/train/NAME-PROFILE-TIME/; --ship replaces the shipped data/checkpoints/NAME. "
                    "An interrupted run (Ctrl-C, a kill) resumes with the same command and --out its folder "
                    "(printed when it starts), and ends with the weights an uninterrupted run would have.",
    )
    train.add_argument("name", metavar="NAME", help="the model to train, e.g. clip")
    train.add_argument("--profile", choices=PROFILES, help=PROFILE_HELP)
    train.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    train.add_argument("--ship", action="store_true", help="write the checkpoint to data/checkpoints/NAME, replacing "
                                                           "the old one once the new one is complete")
    train.add_argument("--out", metavar="DIR", help="write logs (and, without --ship, the checkpoint) to DIR: a new "
                                                    "or empty folder, or an interrupted run's folder to resume it")
    train.add_argument("--checkpoint-every", type=count, default=100, metavar="STEPS",
                       help="save the state an interrupted run resumes from every STEPS steps (default: 100)")
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
    generate.add_argument("--n-samples", type=count, default=4, help="images per prompt (default: 4)")
    generate.add_argument("--steps", type=count, help="decoding or sampling steps (default: the generator's — maskgit 8, "
                                                    "sana 20, xar 20 flow steps per entity; a raster model takes one "
                                                    "per token)")
    generate.add_argument("--cfg", type=weight, help="classifier-free guidance weight (default: the generator's — "
                                                    "maskgit 3, sana 4.5)")
    generate.add_argument("--solver", choices=("euler", "dpm", "sde"),
                          help="a flow generator's solver: flow Euler (default), Flow-DPM-Solver (sana) or "
                               "Euler–Maruyama (xar's sde)")
    generate.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    generate.add_argument("--save-process", action="store_true",
                          help="also save every decoding step's image under OUTDIR/00000/process/ "
                                                             "(xar: the image after each entity)")
    if argv[:1] == ["generate"]:
        from cotlab.verification.search import VERIFIERS

        generate.add_argument("--verifier", choices=list(VERIFIERS),
                              help="choose each image among --candidates paths: "
                                   + "; ".join(f"{name}: {v.description}" for name, v in VERIFIERS.items()))
    generate.add_argument("--candidates", type=count, default=20, help="paths per image with --verifier (default: 20)")
    generate.set_defaults(handler=_generate)

    geneval = commands.add_parser("geneval", help="the GenEval benchmark on the Shapes world",
                                  description="The GenEval benchmark, transposed to the Shapes world.")
    geneval_commands = geneval.add_subparsers(dest="geneval_command", required=True, metavar="COMMAND")
    score = geneval_commands.add_parser(
        "score", help="score a folder of generated images",
        description="Score images in GenEval's folder layout (DIR/00000/metadata.jsonl, "
                    "DIR/00000/samples/0000.png …): prints each task's score and overall, the unweighted "
                    "mean of the six tasks, each with its 95 %% interval.",
    )
    score.add_argument("dir", metavar="DIR", help="the folder of generated images")
    score.add_argument("--json", metavar="FILE", help="also write the scores and their 95 %% intervals to FILE as JSON")
    score.set_defaults(handler=_geneval_score)
    compare = geneval_commands.add_parser(
        "compare", help="two folders of the same prompts and seeds: each score and the paired difference",
        description="Score two folders generated from the same prompt file with the same --n-samples and --seed "
                    "(e.g. with and without a verifier) and print each task's score for both and their paired "
                    "difference A − B with its 95 %% interval; an interval that holds 0 is no measurable difference.",
    )
    compare.add_argument("dir_a", metavar="DIR_A", help="the first folder of generated images")
    compare.add_argument("dir_b", metavar="DIR_B", help="the second, with the same prompts and samples")
    compare.add_argument("--json", metavar="FILE", help="also write both summaries and the difference to FILE as JSON")
    compare.set_defaults(handler=_geneval_compare)

    bench = commands.add_parser("bench", help="speed and accuracy benchmarks (tables and JSON)",
                                description="Benchmarks that compare side by side in one run.")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True, metavar="BENCH")
    for name, (_, help) in BENCHES.items():
        sub = bench_commands.add_parser(name, help=help, description=help)
        if argv[:2] == ["bench", name]:  # only the benchmark asked for is imported
            _bench_arguments(sub, name, get_bench(name), argv)

    report = commands.add_parser(
        "report", help="the shipped results (data/results/) as tables; --readme rewrites the README's",
        description="Print the table of each shipped result in data/results/ (every benchmark run with --ship), "
                    "with the command, commit, date and machine that made it. --readme rewrites the README's "
                    "result blocks (<!-- results:NAME --> … <!-- /results:NAME -->) from the same files.",
    )
    report.add_argument("names", nargs="*", metavar="BENCH", help=f"only these results (of: {', '.join(BENCHES)})")
    report.add_argument("--readme", action="store_true", help="rewrite the README's result blocks")
    report.set_defaults(handler=_report)
    return parser


def _bench_arguments(parser: argparse.ArgumentParser, name: str, bench, argv: list[str]) -> None:
    """A benchmark's own options, then the three every benchmark has."""
    parser.description = bench.description
    bench.arguments(parser)
    parser.add_argument("--seed", type=seed, default=0, help="random seed (default: 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the result to FILE as JSON")
    parser.add_argument("--ship", action="store_true",
                        help=f"also write it to data/results/{name}.json, the shipped result that the README "
                             "and the notebooks show (then run: cotlab report --readme)")

    def handler(args: argparse.Namespace) -> int:
        from cotlab import results
        from cotlab.io import atomic_write_json

        start = time.perf_counter()
        result = bench.run(args)
        print(bench.format(result))
        if args.json:
            atomic_write_json(args.json, result)
        if args.ship:
            path = results.save(name, result, "cotlab " + " ".join(argv), time.perf_counter() - start)
            print(f"wrote {path}; render the README's tables with: cotlab report --readme")
        return 0
    parser.set_defaults(handler=handler)


def _report(args: argparse.Namespace) -> int:
    from cotlab import results

    if args.readme:
        changed = results.write_readme()
        print(f"README.md: rewrote {', '.join(changed)}" if changed else "README.md is up to date")
        return 0
    for name in args.names or results.shipped():
        print(f"## {name}\n\n{results.render(name)}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cotlab`` command; returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(argv).parse_args(argv)
    except SystemExit as e:  # a refused option (2, said in one line by Parser.error), or --help / --version (0)
        return e.code
    signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's stop is handled as Ctrl-C is
    try:
        return args.handler(args)
    except (CotlabError, ValueError, FileNotFoundError) as e:
        message = " ".join(str(e).split("\n")[0].split()) or type(e).__name__
        print(f"cotlab: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cotlab: interrupted: what was finished is kept; resume as printed when it started", file=sys.stderr)
        return 130


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
