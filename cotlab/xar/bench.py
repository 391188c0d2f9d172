"""The benchmark of notebook 03: ``cotlab bench xar``.

Three questions, one run, on the same stratified benchmark prompts and sample seeds:

1. **Which entity?** The ablation's variants (``cotlab.xar.recipes.ABLATION``) are trained here, one
   after another, each for the same wall time, and judged side by side with the shipped ``xar``:
   GenEval with 95 % intervals, Shapes-FD against renders of the same prompts (with its interval),
   the held-out bindings, forward passes per image, images/s when generating (batch 64) and when
   training. The paired differences answer the paper's orderings: cell − token, NCL − teacher forcing,
   on GenEval and on Shapes-FD (``shapes_fd_contrast``: the same prompts resampled for both).
2. **Exposure bias, measured.** For the noisy-context and the teacher-forced cell models, the first n
   entities of each image are handed over from the ground truth (the prompt's scene, rendered and
   encoded) and the model draws the rest, n = 0 … N (n = 0: its own samples; n = N: the ground
   truth's reconstruction). The gap at n, GenEval(ground-truth context n) − GenEval(own), is what the
   model loses by building on its own outputs rather than the truth; paired, with intervals, and the
   difference of the two models' gaps, (given − own)_NCL − (given − own)_TF. On Shapes-FD, where lower
   is better, the gap is FD(own) − FD(given); on both, a positive gap is what building on its own
   outputs costs, and a negative difference of gaps is NCL's smaller exposure bias.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from cotlab import geneval
from cotlab.bench import Bench, best_time, prompt_options
from cotlab.errors import CotlabError
from cotlab.harness import fit, load_checkpoint, seed_everything
from cotlab.metrics import shapes_fd_contrast, shapes_fd_with_interval, to_tensor, to_uint8
from cotlab.registry import get_recipe
from cotlab.sampling import prompt_seed, row_seeds, sample
from cotlab.shapes import World
from cotlab.stats import describe_difference, with_interval
from cotlab.xar.decoding import SOLVER_NAMES
from cotlab.xar.recipes import ABLATION
from cotlab.options import count

SHIPPED = "xar"
PAIRS = (("xar_cell", "xar_token"), ("xar_cell", "xar_cell_tf"))  # the paper's two findings, as a − b
BIAS_MODELS = ("xar_cell", "xar_cell_tf")  # noisy context, teacher forcing


def train_variant(name: str, profile: str, seed: int) -> tuple[torch.nn.Module, dict]:
    """Train the ablation's recipe ``name`` (its own wall-time budget and steps); (model, training facts)."""
    recipe = get_recipe(name)
    seed_everything(seed)
    model = recipe.build(profile)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        trainer = fit(model, recipe.datamodule(profile, seed), profile=profile, run_dir=folder, name=name,
                      enable_progress_bar=False)
        seconds = time.perf_counter() - start
    model.eval()
    c = model.config
    return model, {"minutes": seconds / 60, "steps": trainer.global_step,
                   "train_images_per_s": trainer.global_step * c.batch_size / seconds}


def ground_truth(metas: list[dict], n_samples: int, seed: int, world: World = World()) -> torch.Tensor:
    """(P·n, 3, H, W): for each prompt, ``n_samples`` rendered scenes it is true of — the reference of
    Shapes-FD and the ground truth the exposure-bias runs hand over."""
    rng = np.random.default_rng(seed)
    return to_tensor(np.stack([world.render(world.scene_for_prompt(meta, rng)) for meta in metas
                               for _ in range(n_samples)]))


def judge(images: torch.Tensor, metas: list[dict], n_samples: int) -> list[dict]:
    """GenEval rows of (P·n, 3, H, W) images, n per prompt in order, named as ``score_folder`` names them."""
    return [{"filename": f"{i:05d}/samples/{j:04d}.png", "tag": meta["tag"],
             "correct": geneval.judge(image, meta)[0]}
            for i, meta in enumerate(metas)
            for j, image in enumerate(to_uint8(images[i * n_samples:(i + 1) * n_samples]))]


@torch.no_grad()
def generate(model, metas: list[dict], n_samples: int, seed: int, given: torch.Tensor | None = None,
             entities: int = 0, batch_prompts: int = 16, **options) -> torch.Tensor:
    """(P·n, 3, H, W): ``n_samples`` images per prompt, the seeds ``cotlab generate`` uses; with
    ``given`` latents (P·n, C, h, w), the first ``entities`` entities of each are handed over."""
    out = []
    for start in range(0, len(metas), batch_prompts):
        chunk = range(start, min(start + batch_prompts, len(metas)))
        captions = [metas[i]["prompt"] for i in chunk for _ in range(n_samples)]
        seeds = [s for i in chunk for s in row_seeds(prompt_seed(seed, i), n_samples)]
        paths = model.paths(captions, seeds, **options)
        if given is not None:
            paths.give(given[start * n_samples:(start + len(chunk)) * n_samples], entities)
        paths.finish()
        out.append(paths.images(final=True))
    return torch.cat(out)


def measure(model, metas, heldout, truth, n_samples: int, seed: int, classifier, **options
            ) -> tuple[dict, list, torch.Tensor]:
    """One row of the entity table, its judged rows (for the paired differences) and its images."""
    images = generate(model, metas, n_samples, seed, **options)
    rows = judge(images, metas, n_samples)
    summary = geneval.summarize(rows)
    fd, fd_interval = shapes_fd_with_interval(truth, images, classifier)
    held = geneval.summarize(judge(generate(model, heldout, n_samples, seed, **options), heldout, n_samples))
    captions = ["two red circles to the left of a blue square"] * 64
    seconds = best_time(lambda: sample(model, captions, seed=list(range(64)), **options), repeats=1)
    c = model.config
    return {"entity": c.entity, "context": "noisy" if c.noisy_context else "teacher forcing",
            "ar_steps": model.layout.entities, "forward_passes": generate_passes(model, **options),
            "images_per_s": 64 / seconds, "overall": summary["overall"], "tags": summary["tags"],
            "interval": summary["interval"]["overall"], "shapes_fd": fd, "shapes_fd_interval": fd_interval,
            "heldout": held["overall"], "heldout_interval": held["interval"]["overall"]}, rows, images


def generate_passes(model, **options) -> int:
    """Forward passes of the transformer per image (guided passes count twice)."""
    return sample(model, ["a red circle"], seed=0, **options).forward_passes


def exposure_bias(model, metas, truth, own: tuple[list, torch.Tensor], n_samples: int, seed: int, classifier,
                  **options) -> list[dict]:
    """Per n = 0 … N: GenEval and Shapes-FD of the images whose first n entities are the ground truth's,
    and their gaps to the model's ``own`` samples (n = 0: their judged rows and images), paired. Each
    point keeps its judged rows and its images under ``rows`` and ``images``."""
    latents = model.encode_images(truth)  # (P·n, C, h, w)
    own_rows, out = own[0], []
    for n in range(model.layout.entities + 1):
        images = own[1] if n == 0 else generate(model, metas, n_samples, seed, given=latents, entities=n, **options)
        rows = own_rows if n == 0 else judge(images, metas, n_samples)
        summary = geneval.summarize(rows)
        fd, fd_interval = shapes_fd_with_interval(truth, images, classifier)
        gap = geneval.paired_difference(rows, own_rows)["overall"]
        fd_gap = shapes_fd_contrast(truth, [own[1], images], (1, -1), classifier, per_prompt=n_samples)
        out.append({"given": n, "overall": summary["overall"], "interval": summary["interval"]["overall"],
                    "shapes_fd": fd, "shapes_fd_interval": fd_interval, "gap": gap, "shapes_fd_gap": fd_gap,
                    "rows": rows, "images": images})
    return out


def bench_xar(every: int = 1, n_samples: int = 4, cfg: float = 5.0, steps: int = 20, solver: str = "sde", seed: int = 0,
              variants: tuple[str, ...] = ABLATION, profile: str = "cpu") -> dict:
    """The entity table, the paired orderings and the exposure-bias curves (module docstring)."""
    unknown = sorted(set(variants) - set(ABLATION))
    if unknown:
        raise CotlabError(f"unknown variant(s) {', '.join(unknown)}: choose from {', '.join(ABLATION)}")
    metas, heldout = geneval.stratified_prompts(every), geneval.benchmark_prompts(heldout=True)[::every]
    truth = ground_truth(metas, n_samples, seed)
    classifier = load_checkpoint("shapes_classifier")
    options = dict(steps=steps, cfg=cfg, solver=solver)
    rows, judged, images, models = [], {}, {}, {}
    try:
        shipped = load_checkpoint(SHIPPED)
    except FileNotFoundError:
        print(f"skipped: no shipped {SHIPPED} (train it with: cotlab train {SHIPPED} --profile cpu --ship)")
        shipped = None
    if shipped is not None:
        row, judged[SHIPPED], _ = measure(shipped, metas, heldout, truth, n_samples, seed, classifier, **options)
        rows.append({"model": SHIPPED, "training": None, **row})
    for name in variants:
        model, training = train_variant(name, profile, seed)
        row, judged[name], images[name] = measure(model, metas, heldout, truth, n_samples, seed, classifier, **options)
        rows.append({"model": name, "training": training, **row})
        if name in BIAS_MODELS:
            models[name] = model
    differences = [{"a": a, "b": b, **geneval.paired_difference(judged[a], judged[b])["overall"],
                    "shapes_fd": shapes_fd_contrast(truth, [images[a], images[b]], (1, -1), classifier,
                                                    per_prompt=n_samples)}
                   for a, b in PAIRS if a in judged and b in judged]
    bias = {name: exposure_bias(model, metas, truth, (judged[name], images[name]), n_samples, seed, classifier, **options)
            for name, model in models.items()}
    gap_differences = []
    if len(bias) == 2:  # NCL's gap − teacher forcing's, per n: (given − own)_NCL − (given − own)_TF; FD's own − given
        ncl, tf = (bias[name] for name in BIAS_MODELS)
        for a, b in zip(ncl[1:], tf[1:]):
            gap_differences.append({"given": a["given"], **geneval.contrast(
                [a["rows"], ncl[0]["rows"], b["rows"], tf[0]["rows"]], (1, -1, -1, 1)),
                "shapes_fd": shapes_fd_contrast(truth, [ncl[0]["images"], a["images"], tf[0]["images"], b["images"]],
                                                (1, -1, -1, 1), classifier, per_prompt=n_samples)})
    for curve in bias.values():
        for point in curve:
            del point["rows"], point["images"]
    return {"prompts": len(metas), "heldout_prompts": len(heldout), "n_samples": n_samples, "cfg": cfg,
            "steps": steps, "solver": solver, "seed": seed, "profile": profile, "threads": torch.get_num_threads(), "rows": rows,
            "differences": differences, "exposure_bias": bias, "gap_differences": gap_differences}


def format_entities(result: dict) -> str:
    """The entity table and the paired orderings."""
    lines = ["| model | entity | context | AR steps | forward passes / image | images/s (generating, batch 64) | "
             "training: minutes, steps, images/s | GenEval overall [95 %] | Shapes-FD [95 %] | held-out bindings [95 %] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        t = r["training"]
        training = "shipped (see its card)" if t is None else \
            f"{t['minutes']:.1f}, {t['steps']}, {t['train_images_per_s']:.0f}"
        lines.append(f"| {r['model']} | {r['entity']} | {r['context']} | {r['ar_steps']} | {r['forward_passes']} | "
                     f"{r['images_per_s']:.1f} | {training} | {with_interval(r['overall'], r['interval'])} | "
                     f"{with_interval(r['shapes_fd'], r['shapes_fd_interval'], 2)} | "
                     f"{with_interval(r['heldout'], r['heldout_interval'])} |")
    if result["differences"]:
        lines += ["", "| paired comparison (same prompts and seeds) | GenEval overall, difference | "
                      "Shapes-FD, difference (negative: a nearer the renders) |", "|---|---|---|"]
        lines += [f"| {d['a']} − {d['b']} | {describe_difference(d['difference'], d['interval'])} | "
                  f"{describe_difference(d['shapes_fd']['value'], d['shapes_fd']['interval'], 2)} |"
                  for d in result["differences"]]
    return "\n".join(lines)


def format_bias(result: dict) -> str:
    """The exposure-bias curves, and the difference of the two models' gaps."""
    lines = []
    for name, curve in result["exposure_bias"].items():
        lines += ["", f"**Exposure bias of {name}**: the first n entities given from the ground truth, the rest "
                      "drawn by the model (n = 0: its own samples).", "",
                  "| n given | GenEval overall [95 %] | gap: given n − own samples (paired) | Shapes-FD [95 %] | "
                  "Shapes-FD gap: own samples − given n (paired) |", "|---|---|---|---|---|"]
        lines += [f"| {p['given']} | {with_interval(p['overall'], p['interval'])} | "
                  f"{describe_difference(p['gap']['difference'], p['gap']['interval'])} | "
                  f"{with_interval(p['shapes_fd'], p['shapes_fd_interval'], 2)} | "
                  f"{describe_difference(p['shapes_fd_gap']['value'], p['shapes_fd_gap']['interval'], 2)} |"
                  for p in curve]
    if result["gap_differences"]:
        a, b = BIAS_MODELS
        lines += ["", f"| n given | GenEval gap of {a} − gap of {b} (negative: a smaller exposure bias) | "
                      f"Shapes-FD gap of {a} − gap of {b} (negative: a smaller exposure bias) |", "|---|---|---|"]
        lines += [f"| {d['given']} | {describe_difference(d['value'], d['interval'])} | "
                  f"{describe_difference(d['shapes_fd']['value'], d['shapes_fd']['interval'], 2)} |"
                  for d in result["gap_differences"]]
    return "\n".join(lines).strip("\n")


def format_xar(result: dict) -> str:
    lines = [format_entities(result), "", format_bias(result)]
    lines.append(f"\n{result['prompts']} benchmark prompts (every tag) × {result['n_samples']} samples, seed "
                 f"{result['seed']}; held-out bindings: {result['heldout_prompts']} prompts × {result['n_samples']}. "
                 f"Sampling: {result['steps']} {SOLVER_NAMES[result['solver']]} steps per entity, CFG ramped to {result['cfg']:g}. The ablation "
                 f"trained in this run, {result['profile']} profile, one variant at a time on {result['threads']} threads. "
                 "95 % intervals: bootstrap over prompts, samples resampled within; differences paired; Shapes-FD's "
                 "interval from bootstrap resamples of both sets, its differences from resamples of whole prompts "
                 "shared by every set.")
    return "\n".join(lines)


def _arguments(parser: argparse.ArgumentParser) -> None:
    prompt_options(parser, every=1, prompts=553, cfg=5.0)
    parser.add_argument("--steps", type=count, default=20, help="flow steps per entity (default: 20)")
    parser.add_argument("--solver", choices=tuple(SOLVER_NAMES), default="sde",
                        help="sde: Euler–Maruyama (default, as xAR); euler: the ODE")
    parser.add_argument("--variants", default=",".join(ABLATION),
                        help=f"the ablation's variants to train and judge (default: all: {','.join(ABLATION)})")


def _run(args: argparse.Namespace) -> dict:
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    return bench_xar(every=args.every, n_samples=args.n_samples, cfg=args.cfg, steps=args.steps, solver=args.solver,
                     seed=args.seed,
                     variants=variants)


XAR_BENCH = Bench(_arguments, _run, format_xar,
                  "next-X prediction: the five entities and teacher forcing, each trained here for the same wall time, "
                  "beside the shipped xar — GenEval and Shapes-FD with 95 % intervals, held-out bindings, forward passes, "
                  "images/s; cell − token and noisy context − teacher forcing, paired; the exposure-bias curve.")
